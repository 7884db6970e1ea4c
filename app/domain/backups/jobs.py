"""Keeps the backup gauges of ``/metrics`` fresh in replicas that run workers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.config import Settings
from app.domain.backups import services
from app.domain.webhooks.operators import announce_critical_backups
from app.lib.errors import ConfigurationError, LetheError
from app.lib.logging import get_logger

__all__ = ("backup_gauge_refresher",)

logger = get_logger("lethe.backups")


async def _refresh_forever(settings: Settings, engine: AsyncEngine) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    while True:
        try:
            health = await services.check_health(settings)
            async with sessions() as session:
                await services.refresh_restore_gauges(session)
            await announce_critical_backups(sessions, health)
        except (LetheError, ConfigurationError, OSError, SQLAlchemyError) as error:
            logger.warning("backup health refresh failed", error=type(error).__name__)
        await asyncio.sleep(settings.backup_check_interval_seconds)


def backup_gauge_refresher(
    settings: Settings, engine: AsyncEngine
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """A lifespan that re-evaluates backup health every ``LETHE_BACKUP_CHECK_INTERVAL_SECONDS``.

    Runs only where workers run and sources are configured; API-only replicas still evaluate
    on ``GET /v1/backups/health``.
    """
    services.backup_metrics()  # registered up front: /metrics lists the families from the start

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        enabled = (
            settings.workers_enabled
            and settings.backup_sources
            and settings.backup_check_interval_seconds > 0
        )
        if not enabled:
            yield
            return
        task = asyncio.create_task(_refresh_forever(settings, engine), name="lethe-backup-gauges")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan
