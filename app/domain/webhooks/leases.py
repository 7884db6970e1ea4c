"""Leases of webhook deliveries, on the shared lease layer (:mod:`app.lib.leases`).

A claim raises ``claim`` (the fencing token) and sets a lease; the outcome of the attempt is
written with ``WHERE id = :id AND claim = :claim``, so a sender that stalled past its lease (and
was replaced) changes nothing. A sender killed mid-send leaves the delivery ``pending`` with a
lease that runs out; another sends it again, with the same ``webhook-id`` (at least once).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.db.webhooks import WebhookDelivery, WebhookSubscription
from app.lib.leases import Holder, LeaseTable

__all__ = ("DELIVERY_LEASE", "claim_due", "settle")

DELIVERY_LEASE = LeaseTable(
    key=WebhookDelivery.id,
    owner=WebhookDelivery.lease_owner,
    expires_at=WebhookDelivery.lease_expires_at,
    token=WebhookDelivery.claim,
)
"""Where a delivery keeps its lease; ``claim`` fences the outcome write."""


def _due(now: datetime) -> Any:
    """Pending, due, not leased (or leased by a sender that is gone), its subscription active, and
    no earlier event of the same request still pending for the same subscription (order per request)."""
    earlier = aliased(WebhookDelivery)
    return and_(
        WebhookDelivery.status == "pending",
        WebhookDelivery.next_attempt_at <= now,
        DELIVERY_LEASE.free(now),
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
    session: AsyncSession, owner: str, lease_seconds: int, now: datetime, limit: int = 1
) -> list[Holder]:
    """Lease up to ``limit`` deliveries due first (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), in
    ``session``. Each is the earliest pending delivery of its request for its subscription (see
    :func:`_due`), so a batch never holds two events of one request: their order is kept.

    Ordered by ``next_attempt_at`` alone: the due index is walked in order and the search stops
    after the first due rows (a secondary sort would evaluate every pending delivery).
    """
    return await DELIVERY_LEASE.claim_batch(
        session,
        owner=owner,
        seconds=lease_seconds,
        ready=_due(now),
        order_by=(WebhookDelivery.next_attempt_at,),
        limit=limit,
        now=now,
    )


async def settle(session: AsyncSession, holder: Holder, values: dict[str, Any]) -> bool:
    """Write an attempt's outcome and release the lease, if this claim still holds the delivery."""
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == holder.key, WebhookDelivery.claim == holder.token)
        .values(**values, lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
