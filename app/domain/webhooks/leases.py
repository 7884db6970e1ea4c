"""Leases of webhook deliveries: claim a due delivery, fence the write of its outcome.

The same pattern as request workers (:mod:`app.domain.requests.leases`): a claim raises
``claim`` and sets a lease; the outcome is written with ``WHERE id = :id AND claim = :claim``,
so a sender that stalled past its lease (and was replaced) changes nothing. A sender killed
mid-send leaves the delivery ``pending`` with a lease that runs out; another sends it again,
with the same ``webhook-id`` (at least once). These two functions are the only lease code of
webhooks, so a shared lease layer can replace them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.db.webhooks import WebhookDelivery, WebhookSubscription

__all__ = ("DeliveryLease", "claim_due", "settle")


@dataclass(frozen=True)
class DeliveryLease:
    """A delivery this sender holds, at this claim."""

    delivery_id: uuid.UUID
    claim: int


def _due(now: datetime) -> Any:
    """Pending, due, not leased (or leased by a sender that is gone), its subscription active, and
    no earlier event of the same request still pending for the same subscription (order per request)."""
    earlier = aliased(WebhookDelivery)
    return and_(
        WebhookDelivery.status == "pending",
        WebhookDelivery.next_attempt_at <= now,
        or_(WebhookDelivery.lease_expires_at.is_(None), WebhookDelivery.lease_expires_at < now),
        WebhookDelivery.subscription_id.in_(
            select(WebhookSubscription.id).where(WebhookSubscription.active.is_(True))
        ),
        ~exists().where(
            earlier.subscription_id == WebhookDelivery.subscription_id,
            earlier.request_id == WebhookDelivery.request_id,
            earlier.event_seq < WebhookDelivery.event_seq,
            earlier.status == "pending",
        ),
    )


async def claim_due(
    session: AsyncSession, owner: str, lease_seconds: int, now: datetime
) -> DeliveryLease | None:
    """Lease the delivery due first (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), in ``session``."""
    statement = (
        select(WebhookDelivery.id, WebhookDelivery.claim)
        .where(_due(now))
        .order_by(WebhookDelivery.next_attempt_at)  # index order: stops at the first due row
        .limit(1)
    )
    if session.bind.dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True, of=WebhookDelivery)
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    delivery_id, claim = row
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.claim == claim)
        .values(claim=claim + 1, lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None  # another sender won the race (SQLite)
    return DeliveryLease(delivery_id=delivery_id, claim=claim + 1)


async def settle(session: AsyncSession, lease: DeliveryLease, values: dict[str, Any]) -> bool:
    """Write an attempt's outcome and release the lease, if this claim still holds the delivery."""
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == lease.delivery_id, WebhookDelivery.claim == lease.claim)
        .values(**values, lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
