"""Tasks of external systems: held with the request, opened (and announced) when it is queued,
shown with its view, and announced again when past their own due time.

A request of any kind gives each selected ``kind: external`` system one task. The event
``external_task.created`` says what to do and which identity names the system needs, never an
identity: the task's owner reads those (and a rectification's new values) once with
``GET .../identities``, within ``LETHE_EXTERNAL_IDENTITIES_TTL_SECONDS`` of the task's opening
(:mod:`app.domain.external.reports`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import msgspec
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.external import ExternalTask
from app.db.requests import FINAL_STATUSES, SubjectRequest
from app.db.store import DetachedRead
from app.db.webhooks import WebhookEvent, WebhookSubscription
from app.domain.audit import services as audit
from app.domain.external.schemas import TaskOut, TaskStatus
from app.domain.requests.catalog import VersionRow, external_at, newest_versions
from app.domain.webhooks.outbox import emit, request_event
from app.lib.clock import as_utc, utcnow
from app.lib.errors import NotFound
from app.manifest.durations import parse_duration
from app.manifest.external import ExternalSystem, is_external, load_external

__all__ = (
    "ACTIONS",
    "RegisteredExternal",
    "announce_task_deadlines",
    "cancel_tasks",
    "current_external",
    "external_systems",
    "hold_tasks",
    "needed_identities",
    "open_tasks",
    "pending_tasks",
    "split_selection",
    "task_path",
    "task_views",
)

ACTIONS = {
    "access": "export every record of the subject and send it to the controller",
    "rectification": "correct the subject's records as the controller instructs",
    "erasure": "erase the subject's records (delete or anonymise them)",
}
"""What a task asks of the system, by request kind (the event's ``action_text``)."""
BATCH = 500

RegisteredExternal = tuple[int, ExternalSystem]
"""An external system's newest version number and its declaration."""


def task_path(request_id: uuid.UUID, system: str) -> str:
    """The API path of a task (append ``/identities``, ``/complete`` or ``/fail``)."""
    return f"/v1/requests/{request_id}/systems/{system}"


async def current_external(session: AsyncSession) -> dict[str, RegisteredExternal]:
    """The newest version of every system registered as ``kind: external``, by system name."""
    return external_systems(await newest_versions(session))


def external_systems(rows: Sequence[VersionRow]) -> dict[str, RegisteredExternal]:
    """The external systems among ``rows`` (from ``newest_versions``), by system name."""
    return {
        row.system: (row.version, load_external(row.document)) for row in rows if is_external(row.document)
    }


def split_selection(
    selected: Sequence[str] | None, externals: Mapping[str, RegisteredExternal]
) -> tuple[list[str] | None, list[str]]:
    """A request's ``systems`` split into database systems (None: all) and external systems."""
    if selected is None:
        return None, sorted(externals)
    return [s for s in selected if s not in externals], sorted({s for s in selected if s in externals})


def needed_identities(chosen: Sequence[str], externals: Mapping[str, RegisteredExternal]) -> set[str]:
    """Identity names the chosen external systems declare."""
    return {name for system in chosen for name in externals[system][1].identities}


async def hold_tasks(
    session: AsyncSession,
    request: SubjectRequest,
    chosen: Sequence[str],
    externals: Mapping[str, RegisteredExternal],
    now: datetime,
) -> None:
    """Add one ``held`` task per chosen system (opened when the request is queued)."""
    for system in chosen:
        version, declared = externals[system]
        session.add(
            ExternalTask(
                request_id=request.id,
                system=system,
                id=uuid.uuid4(),
                manifest_version=version,
                client_id=request.client_id,
                notify=str(declared.webhook or "manual"),
                status="held",
                due_at=parse_duration(declared.due).after(now),
                counts={},
                created_at=now,
                updated_at=now,
            )
        )
    await session.flush()


async def _subscription(session: AsyncSession, subscription_id: str) -> WebhookSubscription | None:
    try:
        key = uuid.UUID(subscription_id)
    except ValueError:
        return None
    found = await session.get(WebhookSubscription, key)
    return found if found is not None and found.active else None


async def open_tasks(session: AsyncSession, request: SubjectRequest, now: datetime | None = None) -> int:
    """Open the request's held tasks: start their due time, tell each system (event
    ``external_task.created`` to its subscription, or to the request's client for ``manual``),
    one audit event each. Returns how many were opened."""
    if not request.holds_tasks:
        return 0
    now = now or utcnow()
    held = (
        await session.scalars(
            select(ExternalTask).where(ExternalTask.request_id == request.id, ExternalTask.status == "held")
        )
    ).all()
    for task in held:
        declared = await external_at(session, task.system, task.manifest_version)
        if declared is None:
            raise NotFound(f"manifest version {task.manifest_version} of system '{task.system}' is missing")
        subscription = await _subscription(session, task.notify) if task.notify != "manual" else None
        task.status = "pending"
        task.due_at = parse_duration(declared.due).after(now)
        task.opened_at = now
        task.client_id = subscription.client_id if subscription is not None else request.client_id
        task.updated_at = now
        path = task_path(request.id, task.system)
        data = {
            "task_id": str(task.id),
            "request_id": str(request.id),
            "system": task.system,
            "kind": request.kind,
            "action_text": ACTIONS[request.kind],
            "subject_ref": request.subject_ref,
            "identity_types": sorted(set(declared.identities) & set(request.identity_types)),
            "due_at": task.due_at.isoformat(),
            "identities_url": f"{path}/identities",
            "complete_url": f"{path}/complete",
            "fail_url": f"{path}/fail",
        }
        if subscription is not None:
            await emit(
                session, "external_task.created", data, request_id=request.id, subscription_id=subscription.id
            )
        else:
            await emit(
                session, "external_task.created", data, client_id=request.client_id, request_id=request.id
            )
        await audit.append(
            session,
            action="external_task.created",
            actor="lethe",
            request_id=str(request.id),
            system=task.system,
            subject_ref=request.subject_ref,
            payload={"kind": request.kind, "notify": "webhook" if subscription else "manual"},
        )
    await session.flush()
    return len(held)


async def pending_tasks(session: AsyncSession, request_id: uuid.UUID) -> int:
    """How many tasks of the request still wait for a report (held or pending)."""
    count = await session.scalar(
        select(func.count())
        .select_from(ExternalTask)
        .where(ExternalTask.request_id == request_id, ExternalTask.status.in_(("held", "pending")))
    )
    return int(count or 0)


async def cancel_tasks(session: AsyncSession, request: SubjectRequest, now: datetime | None = None) -> int:
    """Cancel the tasks of ``request`` still held or pending, in the caller's transaction (the
    request ended otherwise than completed): they are no longer overdue nor announced, and a late
    report answers 409 ``task-cancelled``. One audit event each; returns how many."""
    if not request.holds_tasks:
        return 0
    now = now or utcnow()
    open_ = (
        await session.scalars(
            select(ExternalTask).where(
                ExternalTask.request_id == request.id, ExternalTask.status.in_(("held", "pending"))
            )
        )
    ).all()
    for task in open_:
        previous, task.status, task.updated_at = task.status, "cancelled", now
        await audit.append(
            session,
            action="external_task.cancelled",
            actor="lethe",
            request_id=str(request.id),
            system=task.system,
            subject_ref=request.subject_ref,
            payload={"kind": request.kind, "from": previous, "request_status": request.status},
        )
    await session.flush()
    return len(open_)


def _out(task: ExternalTask, now: datetime) -> TaskOut:
    return TaskOut(
        id=task.id,
        system=task.system,
        manifest_version=task.manifest_version,
        status=cast("TaskStatus", task.status),
        notify="manual" if task.notify == "manual" else "webhook",  # not another client's subscription id
        due_at=task.due_at if task.status != "held" else None,
        overdue=task.status == "pending" and as_utc(task.due_at) < now,
        identities_read=task.identities_read_at is not None,
        opened_at=task.opened_at if task.status != "held" else None,
        counts=dict(task.counts),
        evidence=task.evidence,
        error=task.error,
        updated_at=task.updated_at,
    )


_TASKS = DetachedRead(
    ExternalTask,
    ExternalTask.request_id.in_(bindparam("request_ids", expanding=True)),
    order_by=[ExternalTask.request_id, ExternalTask.system],
)


async def task_views(
    session: AsyncSession, request_ids: Sequence[uuid.UUID], now: datetime | None = None
) -> dict[uuid.UUID, list[TaskOut]]:
    """The tasks of each request (by system; none: an empty list), for their public views (ask
    only about requests that hold some: ``SubjectRequest.holds_tasks``)."""
    found: dict[uuid.UUID, list[TaskOut]] = {request_id: [] for request_id in request_ids}
    if not found:
        return found
    rows = await _TASKS(session, request_ids=list(found))
    moment = now or utcnow()
    for task in rows:
        found[task.request_id].append(_out(task, moment))
    return found


def _deadline_event(task: ExternalTask, now: datetime) -> tuple[str, str]:
    """The event a pending task's deadline calls for now, and its dedupe key (once per task,
    event and due time)."""
    kind = "request.overdue" if as_utc(task.due_at) <= now else "request.due_soon"
    return kind, f"{kind}:task:{task.id}:{as_utc(task.due_at).isoformat()}"


async def announce_task_deadlines(
    store_engine: AsyncEngine, due_soon_hours: int, now: datetime | None = None
) -> int:
    """Announce once each pending task within ``due_soon_hours`` of its due time
    (``request.due_soon``) and once past it (``request.overdue``), with the task in
    ``data.external_task``, to the request's client; returns how many were announced."""
    now = now or utcnow()
    sessions = async_sessionmaker(store_engine, expire_on_commit=False)
    async with sessions() as session:
        near = (
            await session.execute(
                select(ExternalTask, SubjectRequest)
                .join(SubjectRequest, SubjectRequest.id == ExternalTask.request_id)
                .where(
                    ExternalTask.status == "pending",
                    ExternalTask.due_at <= now + timedelta(hours=due_soon_hours),
                    SubjectRequest.status.not_in(FINAL_STATUSES),
                )
                .order_by(ExternalTask.due_at)
                .limit(BATCH)
            )
        ).all()
        keys = {_deadline_event(task, now)[1] for task, _ in near}
        done = set(
            (
                await session.scalars(
                    select(WebhookEvent.dedupe_key).where(WebhookEvent.dedupe_key.in_(keys))
                )
            ).all()
            if keys
            else ()
        )
    announced = 0
    for task, request in near:
        kind, key = _deadline_event(task, now)
        if key in done:
            continue
        detail: dict[str, Any] = msgspec.to_builtins(_out(task, now))
        try:
            async with sessions() as session, session.begin():
                if await request_event(session, request, kind, dedupe_key=key, external_task=detail):
                    announced += 1
        except IntegrityError:
            continue  # announced already (here or by another replica)
    return announced
