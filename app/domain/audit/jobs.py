"""The audit chain's background work: the sequencer, and signed checkpoints written to the sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.config import Settings
from app.domain.audit.chain import append_to_sink
from app.domain.audit.sequencer import run_sequencer
from app.lib.logging import get_logger
from app.lib.loops import LoopWatch

__all__ = ("audit_lifespan", "write_checkpoints_forever")

logger = get_logger("lethe.audit")


async def write_checkpoints_forever(settings: Settings, engine: AsyncEngine) -> None:
    """Every ``LETHE_AUDIT_CHECKPOINT_INTERVAL_SECONDS``, witness new events in the sink.

    A failed write (sink unwritable, store down) is logged and retried at the next interval; the
    loop itself never ends, so truncation stays detectable from the last checkpoint written.
    """
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    while True:
        try:
            async with sessions() as session:
                await append_to_sink(session, settings)
        except Exception as error:
            logger.warning("audit checkpoint not written", error_type=type(error).__name__)
        await asyncio.sleep(settings.audit_checkpoint_interval_seconds)


def audit_lifespan(
    settings: Settings, engine: AsyncEngine, loops: LoopWatch
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """Where workers run: the sequencer (one active across replicas, by lease) and, when
    ``LETHE_AUDIT_CHECKPOINT_PATH`` is set, the checkpoint writer."""

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        if settings.workers_enabled:
            loops.start("audit-sequencer", lambda: run_sequencer(settings, engine))
        if settings.workers_enabled and settings.audit_checkpoint_path:
            loops.start("audit-checkpoints", lambda: write_checkpoints_forever(settings, engine))
        try:
            yield
        finally:
            await loops.stop()

    return lifespan
