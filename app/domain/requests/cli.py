"""``lethe worker``: run request workers without the HTTP server (a Deployment of its own).

It also runs the audit sequencer (one active across replicas, by lease), so a deployment whose
API replicas run without workers still gets its audit events linked.
"""

from __future__ import annotations

import asyncio
import signal

import click

__all__ = ("worker_command",)


async def _serve(*, once: bool) -> None:
    from app.config import get_settings
    from app.db.store import create_store_engine
    from app.domain.audit.sequencer import run_sequencer, sequence_now
    from app.domain.requests.jobs import RequestWorker, drain, run_workers, worker_count
    from app.engine.targets import TargetRegistry
    from app.lib.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    engine = create_store_engine(settings)
    try:
        if once:
            targets = TargetRegistry(settings)
            try:
                count = worker_count(settings)
                await drain([RequestWorker(settings, engine, targets, f"once-{i}") for i in range(count)])
                await sequence_now(engine, batch_size=settings.audit_sequencer_batch_size)
            finally:
                await targets.dispose()
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        sequencer = asyncio.create_task(run_sequencer(settings, engine))
        try:
            await run_workers(settings, engine, stop)
        finally:
            sequencer.cancel()
            await asyncio.gather(sequencer, return_exceptions=True)
    finally:
        await engine.dispose()


@click.command(name="worker")
@click.option("--once", is_flag=True, help="Process every request that is ready, then exit.")
def worker_command(*, once: bool) -> None:
    """Run request workers (claims, leases, exports, rectifications, erasures) and webhook
    delivery workers until SIGTERM."""
    asyncio.run(_serve(once=once))
