"""Housekeeping beside the workers: purge expired export artifacts, keep request gauges current."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.config import Settings
from app.db.requests import SubjectRequest
from app.domain.audit import services as audit
from app.domain.requests.artifacts import remove_artifacts
from app.domain.requests.leases import WORKER_ACTOR
from app.domain.requests.metrics import refresh_request_gauges
from app.engine.storage import STORAGE_ERRORS
from app.lib.logging import get_logger

__all__ = ("housekeeping", "purge_expired_artifacts", "refresh_gauges_forever")

logger = get_logger("lethe.workers")

PURGE_INTERVAL = timedelta(minutes=1)
GAUGE_INTERVAL_SECONDS = 15.0


def _now() -> datetime:
    return datetime.now(UTC)


async def purge_expired_artifacts(
    settings: Settings, store_engine: AsyncEngine, now: datetime | None = None
) -> int:
    """Delete expired export artifacts and record it (one audit event per request); returns how many."""
    now = now or _now()
    sessions = async_sessionmaker(store_engine, expire_on_commit=False)
    purged = 0
    async with sessions() as session, session.begin():
        expired = (
            await session.scalars(
                select(SubjectRequest)
                .where(
                    SubjectRequest.artifact_attempt.is_not(None), SubjectRequest.artifact_expires_at <= now
                )
                .with_for_update(skip_locked=True)
            )
        ).all()
        for request in expired:
            await remove_artifacts(settings, request.id, keep=None)
            request.artifact_attempt = None
            request.updated_at = now
            await audit.append(
                session,
                action="request.export_purged",
                actor=WORKER_ACTOR,
                request_id=str(request.id),
                subject_ref=request.subject_ref,
                payload={"kind": request.kind},
            )
            purged += 1
    return purged


async def housekeeping(settings: Settings, store_engine: AsyncEngine, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await purge_expired_artifacts(settings, store_engine)
        except (SQLAlchemyError, *STORAGE_ERRORS) as exc:
            logger.warning("artifact purge failed", error_type=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=PURGE_INTERVAL.total_seconds())


async def refresh_gauges_forever(store_engine: AsyncEngine, stop: asyncio.Event) -> None:
    """Keep the request gauges current (every replica, workers or not)."""
    while not stop.is_set():
        try:
            await refresh_request_gauges(store_engine)
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("request gauges not refreshed", error_type=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=GAUGE_INTERVAL_SECONDS)
