"""Periodic upkeep of webhooks: deadline events (announced once each), and purging old deliveries.

``request.due_soon`` and ``request.overdue`` are found by a periodic look at deadlines.

Each announcement carries a ``dedupe_key`` naming the request, the event and the deadline in
force, unique in the outbox: a replica that loses the race rolls back its copy, and an extended
deadline is announced again when it in turn comes near.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.config import Settings
from app.db.requests import FINAL_STATUSES, SubjectRequest
from app.db.webhooks import WebhookDelivery, WebhookEvent
from app.domain.external.tasks import announce_task_deadlines
from app.domain.webhooks.outbox import request_event
from app.lib.clock import utcnow

__all__ = ("announce_deadlines", "purge_finished", "upkeep")

BATCH = 500


def _dedupe_key(request: SubjectRequest, event_type: str) -> str:
    return f"{event_type}:{request.id}:{request.effective_due_at.isoformat()}"


async def announce_deadlines(
    settings: Settings, store_engine: AsyncEngine, now: datetime | None = None
) -> int:
    """Emit due-soon/overdue events not yet announced for open requests; returns how many."""
    now = now or utcnow()
    horizon = now + timedelta(hours=settings.request_due_soon_hours)
    sessions = async_sessionmaker(store_engine, expire_on_commit=False)
    due = func.coalesce(SubjectRequest.extended_due_at, SubjectRequest.due_at)
    async with sessions() as session:
        candidates = (
            await session.scalars(
                select(SubjectRequest)
                .where(SubjectRequest.status.not_in(FINAL_STATUSES), due <= horizon)
                .order_by(due)
                .limit(BATCH)
            )
        ).all()
        wanted = {
            (request, kind)
            for request in candidates
            for kind in (("request.overdue",) if request.effective_due_at <= now else ("request.due_soon",))
        }
        keys = {_dedupe_key(r, k) for r, k in wanted}
        done = set(
            (
                await session.scalars(
                    select(WebhookEvent.dedupe_key).where(WebhookEvent.dedupe_key.in_(keys))
                )
            ).all()
            if keys
            else []
        )
    announced = 0
    for request, kind in sorted(wanted, key=lambda pair: (pair[0].effective_due_at, str(pair[0].id))):
        key = _dedupe_key(request, kind)
        if key in done:
            continue
        try:
            async with sessions() as session, session.begin():
                if await request_event(session, request, kind, dedupe_key=key) is not None:
                    announced += 1
        except IntegrityError:
            continue  # another replica announced it first
    return announced


async def purge_finished(store_engine: AsyncEngine, keep_days: int, now: datetime | None = None) -> int:
    """Delete delivered and dead deliveries older than ``keep_days``, and events none refers to any
    more (but keep an open request's deadline events: they stop a second announcement); how many
    deliveries went."""
    before = (now or utcnow()) - timedelta(days=keep_days)
    async with store_engine.begin() as connection:
        purged = await connection.execute(
            delete(WebhookDelivery).where(
                WebhookDelivery.status.in_(("delivered", "dead")), WebhookDelivery.created_at < before
            )
        )
        open_request = exists().where(
            SubjectRequest.id == WebhookEvent.request_id, SubjectRequest.status.not_in(FINAL_STATUSES)
        )
        await connection.execute(
            delete(WebhookEvent).where(
                WebhookEvent.created_at < before,
                ~exists().where(WebhookDelivery.event_seq == WebhookEvent.seq),
                ~and_(WebhookEvent.dedupe_key.is_not(None), open_request),
            )
        )
    return int(purged.rowcount)


async def upkeep(settings: Settings, store_engine: AsyncEngine) -> None:
    """One round of upkeep: announce deadlines (of requests and of their external tasks), purge
    old deliveries (every ``deadline_check_interval_seconds``, on the process's loop watch)."""
    await announce_deadlines(settings, store_engine)
    await announce_task_deadlines(store_engine, settings.request_due_soon_hours)
    await purge_finished(store_engine, settings.webhook_keep_days)
