"""What an external system does with its task: read the identities once (within
``LETHE_EXTERNAL_IDENTITIES_TTL_SECONDS`` of the task's opening), report it done (with an export
part for an access request) or failed.

Only the task's owner (the notified subscription's client, else the request's client) or a
holder of ``requests:admin`` may; anyone else gets 404, as for a task that does not exist. Every
step locks the request row first, so a report and a worker finishing the database systems
settle in one order: the last of them completes the request.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import msgspec
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.external import ExternalTask
from app.db.requests import FINAL_STATUSES, SubjectRequest
from app.domain.audit import services as audit
from app.domain.external.parts import seal_part
from app.domain.external.schemas import TaskCompleteIn, TaskFailIn, TaskIdentitiesOut
from app.domain.external.tasks import pending_tasks
from app.domain.requests.artifacts import remove_artifacts
from app.domain.requests.catalog import external_at
from app.domain.requests.queries import load_request
from app.domain.requests.services import decrypt_subject, transition
from app.domain.webhooks.outbox import announce_request
from app.lib.auth import ADMIN_SCOPE, Principal
from app.lib.clock import as_utc, utcnow
from app.lib.errors import (
    Conflict,
    IdentitiesExpired,
    NotFound,
    PayloadTooLarge,
    TaskCancelled,
    ValidationFailed,
    field_error,
)

__all__ = ("complete_task", "fail_task", "read_identities")


async def _task(
    session: AsyncSession, request_id: uuid.UUID, system: str, principal: Principal
) -> tuple[SubjectRequest, ExternalTask]:
    """The request (locked) and its task of ``system``, if ``principal`` may act on it."""
    try:
        request = await load_request(session, request_id, lock=True)
    except NotFound:
        request = None
    task = await session.get(ExternalTask, (request_id, system)) if request is not None else None
    if (
        request is None
        or task is None
        or not (task.client_id == principal.client_id or ADMIN_SCOPE in principal.scopes)
    ):
        raise NotFound(f"request {request_id} has no task for system '{system}'")
    return request, task


def _require_pending(task: ExternalTask, request_id: uuid.UUID, request_status: str) -> None:
    if task.status == "cancelled":
        raise TaskCancelled(
            f"the task of system '{task.system}' in request {request_id} was cancelled: "
            f"the request is {request_status}; nothing more is expected from this system"
        )
    if task.status != "pending":
        what = "waits for the request's approval" if task.status == "held" else f"is {task.status} already"
        raise Conflict(f"the task of system '{task.system}' in request {request_id} {what}")


async def _settle(
    session: AsyncSession,
    request_id: uuid.UUID,
    system: str,
    principal: Principal,
    status: str,
    audit_payload: dict[str, Any],
    **fields: Any,
) -> SubjectRequest:
    """Record ``principal``'s report on the pending task (one audit event); the locked request."""
    request, task = await _task(session, request_id, system, principal)
    _require_pending(task, request_id, request.status)
    for name, value in {**fields, "status": status, "actor": principal.sub, "updated_at": utcnow()}.items():
        setattr(task, name, value)
    await session.flush()
    await audit.append(
        session,
        action=f"external_task.{status}",
        actor=principal.sub,
        request_id=str(request_id),
        system=system,
        subject_ref=request.subject_ref,
        payload=audit_payload,
    )
    return request


async def read_identities(
    session: AsyncSession, settings: Settings, request_id: uuid.UUID, system: str, principal: Principal
) -> TaskIdentitiesOut:
    """The identities the system declared it needs (and, for a rectification, the changes the
    request gives for it), decrypted, once per task and only until the read expires (audited).

    Raises:
        NotFound: no such task, or not ``principal``'s.
        Conflict: the task is not pending, or its identities were read already.
        IdentitiesExpired: the read's time to live is over (the task can still be reported).
    """
    request, task = await _task(session, request_id, system, principal)
    _require_pending(task, request_id, request.status)
    if task.identities_read_at is not None:
        raise Conflict(f"the identities of the task of system '{system}' were read already")
    ttl = timedelta(seconds=settings.external_identities_ttl_seconds)
    expires = (task.opened_at or task.updated_at) + ttl  # updated_at: opened before opened_at existed
    if as_utc(expires) <= utcnow():
        until = as_utc(expires).isoformat()
        raise IdentitiesExpired(f"the identities of the task of system '{system}' expired at {until}")
    identities, tenant, changes = decrypt_subject(settings, request)
    declared = await external_at(session, system, task.manifest_version)
    needed = set(declared.identities) if declared is not None else set()
    task.identities_read_at = task.updated_at = utcnow()
    await audit.append(
        session,
        action="external_task.identities_read",
        actor=principal.sub,
        request_id=str(request_id),
        system=system,
        subject_ref=request.subject_ref,
        payload={"identity_types": sorted(needed & set(identities))},
    )
    return TaskIdentitiesOut(
        task_id=task.id,
        request_id=request_id,
        system=system,
        kind=request.kind,
        identities={name: value for name, value in identities.items() if name in needed},
        tenant=tenant,
        changes=dict(changes.get(system, {})) if request.kind == "rectification" else None,
    )


def _sealed_part(
    settings: Settings, request: SubjectRequest, system: str, body: TaskCompleteIn
) -> bytes | None:
    """The report's export part, encrypted for storage (None without one).

    Raises:
        ValidationFailed: a part on a request that is not an access request.
        PayloadTooLarge: the encoded part exceeds ``external_export_part_bytes``.
    """
    if body.export_part is None:
        return None
    if request.kind != "access":
        raise ValidationFailed(
            f"an export part is only for access requests, not {request.kind}",
            [field_error("body.export_part", "only for access requests")],
        )
    encoded = msgspec.json.encode(body.export_part)
    limit = settings.external_export_part_bytes
    if len(encoded) > limit:
        raise PayloadTooLarge(
            f"body.export_part has {len(encoded)} bytes of JSON; at most {limit} are accepted"
        )
    return seal_part(settings, request.id, system, encoded)


async def complete_task(
    session: AsyncSession,
    settings: Settings,
    request_id: uuid.UUID,
    system: str,
    body: TaskCompleteIn,
    principal: Principal,
) -> None:
    """Record the task done (its export part encrypted); when it was the last one and the
    database systems are done (``awaiting_systems``), the request completes (``request.completed``,
    ``export.ready``), or, for an access request whose export waits for the parts, is queued
    again for a worker to assemble it.

    Raises:
        NotFound: no such task, or not ``principal``'s.
        Conflict: the task is not pending (``TaskCancelled``: its request ended).
        ValidationFailed: an export part on a request that is not an access request.
        PayloadTooLarge: the export part is over the limit.
    """
    request, task = await _task(session, request_id, system, principal)
    _require_pending(task, request_id, request.status)
    part = _sealed_part(settings, request, system, body)
    request = await _settle(
        session,
        request_id,
        system,
        principal,
        "completed",
        {"counts": dict(body.counts), "evidence": body.evidence is not None, "export_part": part is not None},
        counts=dict(body.counts),
        evidence=body.evidence,
        export_part=part,
    )
    if request.status != "awaiting_systems" or await pending_tasks(session, request_id) > 0:
        return
    assemble = request.kind == "access" and request.artifact_attempt is None  # the export waits
    await transition(
        session,
        request,
        to="queued" if assemble else "completed",
        action="request.requeued" if assemble else "request.completed",
        actor=principal.sub,
        allowed_from=frozenset({"awaiting_systems"}),
        payload={"system": system},
    )
    if not assemble:
        ready = ("export.ready",) if request.artifact_attempt is not None else ()
        await announce_request(session, request, "request.completed", *ready)


async def fail_task(
    session: AsyncSession,
    settings: Settings,
    request_id: uuid.UUID,
    system: str,
    body: TaskFailIn,
    principal: Principal,
) -> None:
    """Record the task failed and fail the request (a worker still running it stops at its next
    fenced write: the request is no longer ``running``).

    Raises:
        NotFound: no such task, or not ``principal``'s.
        Conflict: the task is not pending (``TaskCancelled``: its request ended).
    """
    request = await _settle(session, request_id, system, principal, "failed", {}, error=body.reason)
    if request.status in FINAL_STATUSES:
        return
    reason = f"external system '{system}' failed: {body.reason}"[:500]
    values: dict[str, Any] = {"failure_reason": reason, "lease_owner": None, "lease_expires_at": None}
    await session.execute(update(SubjectRequest).where(SubjectRequest.id == request_id).values(**values))
    request.failure_reason = reason
    await transition(
        session,
        request,
        to="failed",
        action="request.failed",
        actor=principal.sub,
        allowed_from=frozenset({request.status}),
        payload={"system": system},
    )
    await announce_request(session, request, "request.failed", failure_reason=reason)
    await remove_artifacts(settings, request_id, request.attempt, keep=None)
