"""Operator events: a failed retention run, a critical backup (``requests:admin`` subscriptions)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.retention import RetentionRun
from app.domain.webhooks.outbox import emit
from app.engine.backups.verdicts import BackupHealth

__all__ = ("announce_critical_backups", "announce_retention_failure")


async def announce_retention_failure(session: AsyncSession, run: RetentionRun) -> None:
    """``retention.run_failed`` for a run that failed or stopped on an error (in its transaction)."""
    if run.dry_run or not (run.status == "failed" or run.error):
        return
    await emit(
        session,
        "retention.run_failed",
        {
            "run_id": str(run.id),
            "policy_id": str(run.policy_id),
            "system": run.system,
            "table": run.table_name,
            "status": run.status,
            "reason": run.error,
            "rows": run.rows_affected,
            "attempt": run.attempt,
        },
    )


async def announce_critical_backups(sessions: async_sessionmaker[AsyncSession], health: BackupHealth) -> int:
    """``backups.critical`` for each critical system, at most once a day per system; how many."""
    announced = 0
    for system in health.systems:
        if system.status != "critical":
            continue
        checks = [
            {"source": c.source, "check": c.check, "reason": c.reason}
            for c in system.checks
            if c.status == "critical"
        ]
        key = f"backups.critical:{system.system}:{health.checked_at.date().isoformat()}"
        try:
            async with sessions() as session, session.begin():
                data = {
                    "system": system.system,
                    "checked_at": health.checked_at.isoformat(),
                    "checks": checks,
                }
                if await emit(session, "backups.critical", data, dedupe_key=key) is not None:
                    announced += 1
        except IntegrityError:
            continue  # announced today already
    return announced
