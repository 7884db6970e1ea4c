"""Prometheus metrics of data-subject requests: by kind and status, overdue, time to completion."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Gauge, Histogram
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.requests import REQUEST_KINDS, REQUEST_STATUSES, SubjectRequest

__all__ = ("COMPLETION_SECONDS", "OVERDUE", "REQUESTS", "observe_completion", "refresh_request_gauges")

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


def observe_completion(kind: str, received_at: datetime, completed_at: datetime) -> None:
    """Record how long a request took (observed once, by the worker that completed it)."""
    COMPLETION_SECONDS.labels(kind=kind).observe(max((completed_at - received_at).total_seconds(), 0.0))


async def refresh_request_gauges(engine: AsyncEngine, now: datetime | None = None) -> None:
    """Recount requests by kind and status, and overdue ones, from the store (cheap GROUP BY)."""
    from app.domain.requests.services import overdue_condition

    now = now or datetime.now(UTC)
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
