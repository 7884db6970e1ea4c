"""Housekeeping beside the workers: purge expired export artifacts (run by :mod:`app.lib.loops`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.config import Settings
from app.db.requests import SubjectRequest
from app.domain.audit import services as audit
from app.domain.requests.artifacts import remove_artifacts
from app.domain.requests.leases import WORKER_ACTOR
from app.lib.clock import utcnow

__all__ = ("GAUGE_INTERVAL_SECONDS", "PURGE_INTERVAL", "purge_expired_artifacts")

PURGE_INTERVAL = timedelta(minutes=1)
GAUGE_INTERVAL_SECONDS = 15.0
"""How often every replica refreshes the request gauges."""


async def purge_expired_artifacts(
    settings: Settings, store_engine: AsyncEngine, now: datetime | None = None
) -> int:
    """Delete expired export artifacts and record it (one audit event per request); returns how many."""
    now = now or utcnow()
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
            await remove_artifacts(settings, request.id, request.attempt, keep=None)
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
