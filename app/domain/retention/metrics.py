"""Prometheus metrics of retention purges: rows purged, runs by outcome, runs that failed."""

from __future__ import annotations

from prometheus_client import Counter

from app.db.retention import RetentionRun

__all__ = ("RETENTION_FAILURES", "RETENTION_ROWS", "RETENTION_RUNS", "observe_run")

RETENTION_ROWS = Counter(
    "lethe_retention_rows",
    "Rows purged by retention (deleted, anonymized or soft-deleted), by system, table and action",
    ["system", "table", "action"],
)
RETENTION_RUNS = Counter(
    "lethe_retention_runs",
    "Retention run segments ended, by system and status (completed, incomplete, failed)",
    ["system", "status"],
)
RETENTION_FAILURES = Counter(
    "lethe_retention_run_failures",
    "Retention runs that failed or stopped on an error, by system",
    ["system"],
)


def observe_run(run: RetentionRun) -> None:
    """Count one ended run segment (dry runs purge nothing and are not counted)."""
    if run.dry_run:
        return
    RETENTION_RUNS.labels(system=run.system, status=run.status).inc()
    if run.status == "failed" or run.error:
        RETENTION_FAILURES.labels(system=run.system).inc()
