"""The outbox: events written in the transaction of the change that causes them.

:func:`emit` inserts the event and one delivery per matching subscription into the caller's
session; they commit with the change or not at all, so no event leaves for a rolled-back
transition and none is lost for a committed one. Delivery workers send them afterwards
(:mod:`app.domain.webhooks.delivery`). Payloads hold ids, kinds, statuses, counts and the
pseudonymous subject reference, never an identity.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast, get_args

from sqlalchemy import Table, bindparam, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.requests import SubjectRequest, SubjectRequestSystem
from app.db.webhooks import WebhookDelivery, WebhookEvent, WebhookSubscription
from app.domain.webhooks.schemas import EventType
from app.lib.clock import utcnow

__all__ = ("EVENT_TYPES", "SYSTEM_EVENTS", "TRANSITION_EVENTS", "announce_request", "emit", "request_event")

EVENT_TYPES: tuple[str, ...] = get_args(EventType)
TRANSITION_EVENTS = {"awaiting_approval": "request.awaiting_approval"}
"""Request states whose transition (:func:`app.domain.requests.services.transition`) is announced."""
SYSTEM_EVENTS = frozenset({"retention.run_failed", "backups.critical"})
"""Operator events: only subscriptions created with ``requests:admin`` receive them."""


_INSERT_EVENT = insert(cast("Table", WebhookEvent.__table__)).returning(WebhookEvent.__table__.c.seq)
_INSERT_DELIVERIES = insert(cast("Table", WebhookDelivery.__table__))
_LISTENERS = select(WebhookSubscription).where(
    WebhookSubscription.active.is_(True),
    or_(WebhookSubscription.admin.is_(True), WebhookSubscription.client_id == bindparam("client_id")),
    or_(WebhookSubscription.request_id.is_(None), WebhookSubscription.request_id == bindparam("request_id")),
)
"""Active subscriptions of a client (none matches a NULL client), the operators', and those
limited to a request (none matches a NULL request): built once, its SQL compiled once."""


async def _subscribers(
    session: AsyncSession,
    client_id: str | None,
    request_id: uuid.UUID | None,
    subscription_id: uuid.UUID | None = None,
) -> list[WebhookSubscription]:
    """Active subscriptions that may hear about ``request_id`` (of its client, the operators',
    the request's own callback), whatever their event filter: one query for several events."""
    if subscription_id is not None:  # one named receiver (an external system's), whatever its filter
        named = await session.get(WebhookSubscription, subscription_id)
        return [named] if named is not None and named.active else []
    found = await session.scalars(_LISTENERS, {"client_id": client_id, "request_id": request_id})
    return list(found.all())


def _listening(subscriptions: list[WebhookSubscription], event_type: str) -> list[WebhookSubscription]:
    return [s for s in subscriptions if event_type in s.events]


async def emit(
    session: AsyncSession,
    event_type: str,
    data: Mapping[str, Any],
    *,
    client_id: str | None = None,
    request_id: uuid.UUID | None = None,
    dedupe_key: str | None = None,
    now: datetime | None = None,
    subscription_id: uuid.UUID | None = None,
) -> int | None:
    """Write one event and its deliveries in ``session``'s transaction; the event's ``seq``, None
    when nobody subscribed.

    ``subscription_id`` sends the event to that subscription only (an external system's receiver).

    Raises:
        IntegrityError: ``dedupe_key`` was announced already (by another replica, say).
    """
    subscribers = _listening(await _subscribers(session, client_id, request_id, subscription_id), event_type)
    return await _write(session, subscribers, event_type, data, client_id, request_id, dedupe_key, now)


async def _write(
    session: AsyncSession,
    subscribers: list[WebhookSubscription],
    event_type: str,
    data: Mapping[str, Any],
    client_id: str | None,
    request_id: uuid.UUID | None,
    dedupe_key: str | None,
    now: datetime | None,
) -> int | None:
    """The event and one delivery per subscriber (none: nothing written); the event's ``seq``.

    Core inserts of statements built once: on the request hot path an ORM flush of the event and
    its deliveries cost more than the rest of the outbox.
    """
    if not subscribers:
        return None
    now = now or utcnow()
    event = {
        "message_id": f"msg_{uuid.uuid4().hex}",
        "type": event_type,
        "request_id": request_id,
        "client_id": client_id,
        "dedupe_key": dedupe_key,
        "payload": {"type": event_type, "timestamp": now.isoformat(), "data": dict(data)},
        "created_at": now,
    }
    # a duplicate ``dedupe_key`` raises IntegrityError here: the caller's rollback
    seq: int = (await session.execute(_INSERT_EVENT, event)).scalar_one()
    deliveries: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "event_seq": seq,
            "subscription_id": subscription.id,
            "client_id": subscription.client_id,
            "request_id": request_id,
            "status": "pending",
            "attempts": 0,
            "claim": 0,
            "next_attempt_at": now,
            "window_started_at": now,
            "history": [],
            "created_at": now,
        }
        for subscription in subscribers
    ]
    await session.execute(_INSERT_DELIVERIES, deliveries)
    return seq


async def _system_progress(session: AsyncSession, request_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = (await session.scalars(SubjectRequestSystem.of_request(request_id))).all()
    return [
        {"system": r.system, "status": r.status, "not_found": r.not_found, "counts": dict(r.counts)}
        for r in rows
    ]


def _request_data(
    request: SubjectRequest, systems: list[dict[str, Any]] | None, extra: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "request_id": str(request.id),
        "kind": request.kind,
        "status": request.status,
        "subject_ref": request.subject_ref,
        "due_at": request.effective_due_at.isoformat(),
        **extra,
        "systems": systems if systems is not None else [{"system": s} for s in request.systems],
    }


async def request_event(
    session: AsyncSession,
    request: SubjectRequest,
    event_type: str,
    *,
    dedupe_key: str | None = None,
    now: datetime | None = None,
    **extra: Any,
) -> int | None:
    """Emit ``event_type`` about ``request`` to its client's subscriptions (and operators'),
    naming its systems."""
    subscribers = _listening(await _subscribers(session, request.client_id, request.id), event_type)
    data = _request_data(request, None, extra)
    client_id, request_id = request.client_id, request.id
    return await _write(session, subscribers, event_type, data, client_id, request_id, dedupe_key, now)


async def announce_request(
    session: AsyncSession, request: SubjectRequest, *event_types: str, **extra: Any
) -> None:
    """Emit ``event_types``, in that order, about ``request`` with each system's status and row
    counts (completion, failure): subscriptions and progress are read once for all of them, and
    progress only when somebody listens."""
    subscriptions = await _subscribers(session, request.client_id, request.id)
    listening = [(event_type, _listening(subscriptions, event_type)) for event_type in event_types]
    if not any(subscribers for _, subscribers in listening):
        return
    data = _request_data(request, await _system_progress(session, request.id), extra)
    for event_type, subscribers in listening:
        await _write(session, subscribers, event_type, data, request.client_id, request.id, None, None)
