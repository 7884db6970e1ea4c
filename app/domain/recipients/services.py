"""Art. 19: who must be told of a completed rectification or erasure, telling them, and recording
a notification made by hand.

When a rectification or erasure completes, :func:`record_recipients` lists, in the completing
transaction, every recipient the manifests name for a table that changed (rows > 0) and for an
external system that did its task, and sends each one ``recipient.notice`` through the outbox.
A recipient whose manifest entry names a ``client`` is told through that client's subscriptions;
its status follows the deliveries. Others are ``manual``: an operator tells them and records it
with :func:`record_notified`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.external import ExternalTask
from app.db.recipients import RequestRecipient
from app.db.requests import SubjectRequest, SubjectRequestSystem
from app.db.webhooks import WebhookDelivery
from app.domain.audit import services as audit
from app.domain.recipients.schemas import RecipientNotifiedIn, RecipientOut, RecipientStatus
from app.domain.requests.catalog import external_at, manifest_at
from app.domain.requests.queries import load_request
from app.domain.webhooks.outbox import emit
from app.lib.auth import Principal
from app.lib.clock import as_utc, utcnow
from app.lib.errors import Conflict, NotFound
from app.manifest.model import Recipient, recipients_of

__all__ = ("NOTICE_KINDS", "recipient_views", "record_notified", "record_recipients")

NOTICE_KINDS = frozenset({"rectification", "erasure"})
"""Request kinds whose completion is told to recipients (Art. 19)."""


@dataclass
class _Found:
    """A recipient being gathered across the tables and systems that name it."""

    client_id: str | None
    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    categories: set[str] = field(default_factory=set)


def _changed(counts: dict[str, Any]) -> dict[str, int]:
    return {table: int(rows) for table, rows in counts.items() if isinstance(rows, int) and rows > 0}


def _name(found: dict[str, _Found], recipient: Recipient, system: str, tables: dict[str, int]) -> _Found:
    entry = found.setdefault(recipient.name, _Found(client_id=recipient.client))
    entry.client_id = entry.client_id or recipient.client
    entry.tables.setdefault(system, {}).update(tables)
    return entry


async def _database_recipients(
    session: AsyncSession, request_id: uuid.UUID, found: dict[str, _Found]
) -> None:
    rows = (await session.scalars(SubjectRequestSystem.of_request(request_id))).all()
    for row in rows:
        changed = _changed(dict(row.counts))
        if not changed:
            continue
        manifest = await manifest_at(session, row.system, row.manifest_version)
        for table, count in changed.items():
            spec = manifest.tables.get(table)
            if spec is None:
                continue
            for recipient in recipients_of(spec.recipients):
                entry = _name(found, recipient, row.system, {table: count})
                entry.categories.update(column.category for column in spec.columns.values())


async def _external_recipients(
    session: AsyncSession, request_id: uuid.UUID, found: dict[str, _Found]
) -> None:
    """Recipients of external systems that did their task: reported counts with one above 0, or
    no counts at all (the system did not say, so its recipients are told rather than missed)."""
    tasks = (
        await session.scalars(
            select(ExternalTask)
            .where(ExternalTask.request_id == request_id, ExternalTask.status == "completed")
            .order_by(ExternalTask.system)
        )
    ).all()
    for task in tasks:
        changed = _changed(dict(task.counts))
        if task.counts and not changed:
            continue
        declared = await external_at(session, task.system, task.manifest_version)
        if declared is None:
            continue
        for recipient in recipients_of(declared.recipients):
            _name(found, recipient, task.system, changed).categories.update(declared.categories)


async def record_recipients(
    session: AsyncSession, request: SubjectRequest, now: datetime | None = None
) -> int:
    """List the recipients of a completed rectification or erasure and send each one
    ``recipient.notice`` (in the caller's transaction); returns how many were listed.

    The notice carries the request's id and kind, the pseudonymous subject reference, the systems,
    tables, row counts and categories that changed: never an identity or a value.
    """
    if request.kind not in NOTICE_KINDS or request.dry_run:
        return 0
    now = now or utcnow()
    found: dict[str, _Found] = {}
    await _database_recipients(session, request.id, found)
    if request.holds_tasks:
        await _external_recipients(session, request.id, found)
    for position, (name, entry) in enumerate(found.items()):
        categories = sorted(entry.categories)
        data = {
            "request_id": str(request.id),
            "kind": request.kind,
            "subject_ref": request.subject_ref,
            "recipient": name,
            "systems": entry.tables,
            "categories": categories,
            "rows": sum(sum(tables.values()) for tables in entry.tables.values()),
            "completed_at": as_utc(request.completed_at or now).isoformat(),
        }
        event_seq = await emit(
            session, "recipient.notice", data, client_id=entry.client_id, request_id=request.id, now=now
        )
        session.add(
            RequestRecipient(
                request_id=request.id,
                position=position,
                name=name,
                client_id=entry.client_id,
                tables=entry.tables,
                categories=categories,
                event_seq=event_seq,
                created_at=now,
            )
        )
    await session.flush()
    return len(found)


def _out(recipient: RequestRecipient, deliveries: Sequence[WebhookDelivery]) -> RecipientOut:
    """The recipient's status: a recorded notification, else its client's deliveries' outcome."""
    base: dict[str, Any] = {
        "name": recipient.name,
        "tables": {system: dict(tables) for system, tables in recipient.tables.items()},
        "categories": list(recipient.categories),
        "evidence": recipient.evidence,
    }
    if recipient.notified_at is not None:
        return RecipientOut(**base, status="notified", via="manual", notified_at=recipient.notified_at)
    delivered = [d.delivered_at for d in deliveries if d.status == "delivered" and d.delivered_at is not None]
    if delivered:
        return RecipientOut(**base, status="notified", via="webhook", notified_at=min(delivered))
    if any(d.status == "pending" for d in deliveries):
        return RecipientOut(**base, status="pending", via=None, notified_at=None)
    status: RecipientStatus = "failed" if deliveries else "manual"
    return RecipientOut(**base, status=status, via=None, notified_at=None)


async def recipient_views(
    session: AsyncSession, request_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[RecipientOut]]:
    """The recipients of each request (none: an empty list), for their public views."""
    views: dict[uuid.UUID, list[RecipientOut]] = {request_id: [] for request_id in request_ids}
    if not views:
        return views
    recipients = (
        await session.scalars(
            select(RequestRecipient)
            .where(RequestRecipient.request_id.in_(list(views)))
            .order_by(RequestRecipient.request_id, RequestRecipient.position)
        )
    ).all()
    seqs = [r.event_seq for r in recipients if r.event_seq is not None and r.client_id is not None]
    deliveries: dict[tuple[int, str], list[WebhookDelivery]] = {}
    if seqs:
        for delivery in await session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.event_seq.in_(seqs))
        ):
            deliveries.setdefault((delivery.event_seq, delivery.client_id), []).append(delivery)
    for recipient in recipients:
        mine = deliveries.get((recipient.event_seq or 0, recipient.client_id or ""), [])
        views[recipient.request_id].append(_out(recipient, mine))
    return views


async def record_notified(
    session: AsyncSession, request_id: uuid.UUID, name: str, body: RecipientNotifiedIn, principal: Principal
) -> RecipientOut:
    """Record that the recipient ``name`` was told by hand: one audit event ``recipient.notified``
    naming the recipient by its place in the request's list (names are free text).

    Raises:
        NotFound: no such request (or another client's), or the request lists no such recipient.
        Conflict: the recipient was notified already (by webhook or by hand).
    """
    request = await load_request(session, request_id, lock=True, viewer=principal)
    recipient = (
        await session.scalars(
            select(RequestRecipient).where(
                RequestRecipient.request_id == request_id, RequestRecipient.name == name
            )
        )
    ).first()
    if recipient is None:
        raise NotFound(f"request {request_id} lists no recipient '{name}'")
    current = (await recipient_views(session, [request_id]))[request_id][recipient.position]
    if current.status == "notified":
        raise Conflict(f"recipient '{name}' of request {request_id} was notified already ({current.via})")
    now = utcnow()
    recipient.notified_at, recipient.notified_by, recipient.evidence = now, principal.sub, body.evidence
    await session.flush()
    await audit.append(
        session,
        action="recipient.notified",
        actor=principal.sub,
        request_id=str(request_id),
        subject_ref=request.subject_ref,
        payload={
            "kind": request.kind,
            "recipient": recipient.position,  # its place in the request's list: names are free text
            "was": current.status,
            "evidence": body.evidence is not None,
        },
    )
    return _out(recipient, [])
