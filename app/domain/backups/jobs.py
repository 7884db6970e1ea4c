"""Keeps the backup gauges of ``/metrics`` fresh in replicas that run workers."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.config import Settings
from app.domain.backups import services
from app.domain.webhooks.operators import announce_critical_backups
from app.lib.errors import ConfigurationError, LetheError
from app.lib.logging import get_logger
from app.lib.loops import LoopWatch

__all__ = ("start_backup_gauges",)

logger = get_logger("lethe.backups")


def start_backup_gauges(loops: LoopWatch, settings: Settings, engine: AsyncEngine) -> None:
    """Re-evaluate backup health every ``LETHE_BACKUP_CHECK_INTERVAL_SECONDS`` on ``loops``.

    Runs only where workers run and sources are configured; API-only replicas still evaluate
    on ``GET /v1/backups/health``.
    """
    services.backup_metrics()  # registered up front: /metrics lists the families from the start
    if not (
        settings.workers_enabled and settings.backup_sources and settings.backup_check_interval_seconds > 0
    ):
        return
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def refresh() -> None:
        try:
            health = await services.check_health(settings)
            async with sessions() as session:
                await services.refresh_restore_gauges(session)
            await announce_critical_backups(sessions, health)
        except (LetheError, ConfigurationError, OSError, SQLAlchemyError) as error:
            logger.warning("backup health refresh failed", error=type(error).__name__)

    loops.every("backup-gauges", settings.backup_check_interval_seconds, refresh, graceful=False)
