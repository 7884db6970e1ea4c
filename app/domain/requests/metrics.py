"""Prometheus metrics of data-subject requests, and the one log line each worker job ends with."""

from __future__ import annotations

import uuid
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.requests import REQUEST_KINDS, REQUEST_STATUSES, SubjectRequest, SubjectRequestSystem
from app.db.store import read_without_transaction
from app.lib.clock import utcnow
from app.lib.logging import get_logger

__all__ = (
    "COMPLETION_SECONDS",
    "JOBS",
    "JOB_SECONDS",
    "OVERDUE",
    "REQUESTS",
    "observe_completion",
    "refresh_request_gauges",
    "report_job",
)

logger = get_logger("lethe.workers")

REQUESTS = Gauge(
    "lethe_subject_requests", "Data-subject requests in the store, by kind and status", ["kind", "status"]
)
OVERDUE = Gauge(
    "lethe_subject_requests_overdue", "Requests past their deadline and not final, by kind", ["kind"]
)
COMPLETION_SECONDS = Histogram(
    "lethe_subject_request_completion_seconds",
    "Time from receipt to completion of a request, by kind",
    ["kind"],
    buckets=(1, 10, 60, 600, 3600, 6 * 3600, 86_400, 7 * 86_400, 30 * 86_400, 90 * 86_400),
)
JOBS = Counter(
    "lethe_request_jobs",
    "Worker attempts at a request, by kind and outcome (completed, failed, deferred, lost)",
    ["kind", "outcome"],
)
_JOB_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600)
JOB_SECONDS = {
    "access": Histogram(
        "lethe_export_duration_seconds", "Run time of one export attempt", ["outcome"], buckets=_JOB_BUCKETS
    ),
    "erasure": Histogram(
        "lethe_erasure_duration_seconds", "Run time of one erasure attempt", ["outcome"], buckets=_JOB_BUCKETS
    ),
    "rectification": Histogram(
        "lethe_rectification_duration_seconds",
        "Run time of one rectification attempt",
        ["outcome"],
        buckets=_JOB_BUCKETS,
    ),
}
"""Request kind -> histogram of one worker attempt's run time."""


def observe_completion(kind: str, received_at: datetime, completed_at: datetime) -> None:
    """Record how long a request took (observed once, by the worker that completed it)."""
    COMPLETION_SECONDS.labels(kind=kind).observe(max((completed_at - received_at).total_seconds(), 0.0))


async def report_job(
    sessions: async_sessionmaker[AsyncSession],
    request_id: uuid.UUID,
    kind: str,
    attempt: int,
    outcome: str,
    seconds: float,
) -> None:
    """Count and time one worker attempt, and log its outcome: per system its status and row counts.

    The line carries ids, kinds, statuses, table names and counts: never an identity.
    """
    JOBS.labels(kind=kind, outcome=outcome).inc()
    JOB_SECONDS[kind].labels(outcome=outcome).observe(seconds)
    async with sessions() as session:
        await read_without_transaction(session)  # a log line: no transaction for it
        reason = (
            await session.scalar(select(SubjectRequest.failure_reason).where(SubjectRequest.id == request_id))
            if outcome == "failed"
            else None
        )
        rows = await session.scalars(SubjectRequestSystem.of_request(request_id))
        systems = {
            row.system: {"status": row.status, "not_found": row.not_found, "rows": dict(row.counts)}
            for row in rows
        }
    logger.info(
        "request job finished",
        request_id=str(request_id),
        kind=kind,
        attempt=attempt,
        status=outcome,
        duration_ms=round(seconds * 1000, 1),
        systems=systems,
        **({"reason": reason} if outcome == "failed" and reason else {}),
    )


async def refresh_request_gauges(engine: AsyncEngine, now: datetime | None = None) -> None:
    """Recount requests by kind and status, and overdue ones, from the store (cheap GROUP BY)."""
    from app.domain.requests.queries import overdue_condition

    now = now or utcnow()
    async with engine.connect() as connection:
        by_status = await connection.execute(
            select(SubjectRequest.kind, SubjectRequest.status, func.count()).group_by(
                SubjectRequest.kind, SubjectRequest.status
            )
        )
        counts = {(kind, status): int(n) for kind, status, n in by_status}
        overdue = await connection.execute(
            select(SubjectRequest.kind, func.count())
            .where(overdue_condition(now))
            .group_by(SubjectRequest.kind)
        )
        overdue_counts = {kind: int(n) for kind, n in overdue}
    for kind in REQUEST_KINDS:
        for status in REQUEST_STATUSES:
            REQUESTS.labels(kind=kind, status=status).set(counts.get((kind, status), 0))
        OVERDUE.labels(kind=kind).set(overdue_counts.get(kind, 0))
