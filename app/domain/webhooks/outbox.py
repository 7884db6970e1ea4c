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
from typing import Any, get_args

from sqlalchemy import or_, select
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


async def _subscribers(
    session: AsyncSession,
    event_type: str,
    client_id: str | None,
    request_id: uuid.UUID | None,
    subscription_id: uuid.UUID | None = None,
) -> list[WebhookSubscription]:
    if subscription_id is not None:  # one named receiver (an external system's), whatever its filter
        named = await session.get(WebhookSubscription, subscription_id)
        return [named] if named is not None and named.active else []
    owners: list[Any] = [WebhookSubscription.admin.is_(True)]
    if client_id is not None:
        owners.append(WebhookSubscription.client_id == client_id)
    candidates = (
        await session.scalars(
            select(WebhookSubscription).where(
                WebhookSubscription.active.is_(True),
                or_(*owners),
                or_(WebhookSubscription.request_id.is_(None), WebhookSubscription.request_id == request_id),
            )
        )
    ).all()
    return [s for s in candidates if event_type in s.events]


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
) -> WebhookEvent | None:
    """Write one event and its deliveries in ``session``'s transaction; None when nobody subscribed.

    ``subscription_id`` sends the event to that subscription only (an external system's receiver).

    Raises:
        IntegrityError: ``dedupe_key`` was announced already (by another replica, say).
    """
    subscribers = await _subscribers(session, event_type, client_id, request_id, subscription_id)
    if not subscribers:
        return None
    now = now or utcnow()
    event = WebhookEvent(
        message_id=f"msg_{uuid.uuid4().hex}",
        type=event_type,
        request_id=request_id,
        client_id=client_id,
        dedupe_key=dedupe_key,
        payload={"type": event_type, "timestamp": now.isoformat(), "data": dict(data)},
        created_at=now,
    )
    session.add(event)
    await session.flush()  # a duplicate ``dedupe_key`` raises IntegrityError: the caller's rollback
    session.add_all(
        WebhookDelivery(
            id=uuid.uuid4(),
            event_seq=event.seq,
            subscription_id=subscription.id,
            client_id=subscription.client_id,
            request_id=request_id,
            status="pending",
            attempts=0,
            claim=0,
            next_attempt_at=now,
            window_started_at=now,
            history=[],
            created_at=now,
        )
        for subscription in subscribers
    )
    await session.flush()
    return event


async def _system_progress(session: AsyncSession, request_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = (await session.scalars(SubjectRequestSystem.of_request(request_id))).all()
    return [
        {"system": r.system, "status": r.status, "not_found": r.not_found, "counts": dict(r.counts)}
        for r in rows
    ]


async def request_event(
    session: AsyncSession,
    request: SubjectRequest,
    event_type: str,
    *,
    progress: bool = False,
    dedupe_key: str | None = None,
    now: datetime | None = None,
    **extra: Any,
) -> WebhookEvent | None:
    """Emit ``event_type`` about ``request`` to its client's subscriptions (and operators').

    ``progress`` adds each system's status and row counts (for completion and failure).
    """
    data: dict[str, Any] = {
        "request_id": str(request.id),
        "kind": request.kind,
        "status": request.status,
        "subject_ref": request.subject_ref,
        "due_at": request.effective_due_at.isoformat(),
        **extra,
    }
    if progress:
        data["systems"] = await _system_progress(session, request.id)
    else:
        data["systems"] = [{"system": s} for s in request.systems]
    return await emit(
        session,
        event_type,
        data,
        client_id=request.client_id,
        request_id=request.id,
        dedupe_key=dedupe_key,
        now=now,
    )


async def announce_request(
    session: AsyncSession, request_id: uuid.UUID, event_type: str, **extra: Any
) -> WebhookEvent | None:
    """:func:`request_event` with per-system progress, for a request known by id (workers)."""
    request = await session.get(SubjectRequest, request_id)
    if request is None:
        return None
    return await request_event(session, request, event_type, progress=True, **extra)
