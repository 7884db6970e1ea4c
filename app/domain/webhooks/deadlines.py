"""``request.due_soon`` and ``request.overdue``: a periodic look at deadlines, announced once each.

Each announcement carries a ``dedupe_key`` naming the request, the event and the deadline in
force, unique in the outbox: a replica that loses the race rolls back its copy, and an extended
deadline is announced again when it in turn comes near.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.config import Settings
from app.db.requests import FINAL_STATUSES, SubjectRequest
from app.db.webhooks import WebhookEvent
from app.domain.webhooks.outbox import request_event
from app.lib.logging import get_logger

__all__ = ("announce_deadlines", "announce_deadlines_forever")

logger = get_logger("lethe.webhooks")
BATCH = 500


def _now() -> datetime:
    return datetime.now(UTC)


def _dedupe_key(request: SubjectRequest, event_type: str) -> str:
    return f"{event_type}:{request.id}:{request.effective_due_at.isoformat()}"


async def announce_deadlines(
    settings: Settings, store_engine: AsyncEngine, now: datetime | None = None
) -> int:
    """Emit due-soon/overdue events not yet announced for open requests; returns how many."""
    now = now or _now()
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


async def announce_deadlines_forever(
    settings: Settings, store_engine: AsyncEngine, stop: asyncio.Event
) -> None:
    """Look at deadlines every ``deadline_check_interval_seconds`` until ``stop``."""
    while not stop.is_set():
        try:
            await announce_deadlines(settings, store_engine)
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("deadline check failed", error_type=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.deadline_check_interval_seconds)
