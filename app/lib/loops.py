"""The one background-task runner: named loops and tasks under watch, stopped gracefully.

Every piece of background work of a process (request workers, the retention scheduler, gauge
refreshers, the audit checkpoint writer; next the webhook delivery worker and the audit
sequencer) runs on the :class:`LoopWatch` that :func:`app.asgi.create_app` builds, so there is one
way to start it, one way to see that it died, and one way to stop it:

- :meth:`LoopWatch.every` runs ``tick()`` every ``seconds`` until shutdown; a tick that raises is
  logged (error type only) and the next tick runs as planned.
- :meth:`LoopWatch.start` runs a long-lived ``loop()`` (e.g. a worker that waits for work itself).
  It should return once :attr:`LoopWatch.stopping` is set; until then, returning or raising means
  it died: it is logged, counted in :data:`LOOP_DEATHS` and listed by :meth:`LoopWatch.dead`, so
  the readiness probe stops sending traffic to a replica whose scheduler silently stopped.
- :meth:`LoopWatch.pause` is the sleep of a loop: it returns early (``False``) on shutdown.
- :meth:`LoopWatch.stop` sets :attr:`LoopWatch.stopping`, cancels loops started without
  ``graceful=True`` at once, lets graceful ones finish what they hold for up to the grace
  (``LETHE_WORKER_LEASE_SECONDS``, which the Helm chart's termination grace covers), then
  cancels what is left. It is idempotent.

Work that holds a lease pairs this with :func:`app.lib.leases.hold` (the heartbeat). A delivery
worker, for instance::

    async def deliver_forever() -> None:
        while not loops.stopping.is_set():
            if not await deliver_one():  # claims an outbox row, sends it, records the attempt
                await loops.pause(settings.webhook_poll_seconds)

    loops.start("webhook-delivery", deliver_forever, graceful=True)

An area starts its work from one function, ``start_<area>(loops, settings, store_engine, ...)``
next to its jobs (see ``start_request_work``, ``start_retention``, ``start_backup_gauges``),
called by the lifespan in :mod:`app.asgi`; ``lethe worker`` builds a runner of its own the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from prometheus_client import Counter

from app.lib.logging import get_logger

__all__ = ("LOOP_DEATHS", "LoopWatch")

logger = get_logger("lethe.loops")

LOOP_DEATHS = Counter(
    "lethe_background_loop_deaths", "Background loops that ended with an error, by loop", ["loop"]
)


class LoopWatch:
    """The background work of one process, started by name and watched until shutdown.

    Args:
        grace_seconds: how long :meth:`stop` lets graceful work finish before cancelling it.
    """

    def __init__(self, grace_seconds: float = 10.0) -> None:
        self.grace_seconds = grace_seconds
        self._tasks: dict[asyncio.Task[None], bool] = {}
        """Running tasks -> graceful (waited for on stop) or not (cancelled at once)."""
        self._dead: dict[str, str] = {}
        self._stopping: asyncio.Event | None = None

    @property
    def stopping(self) -> asyncio.Event:
        """Set when shutdown begins: graceful loops finish what they hold and return."""
        if self._stopping is None:
            self._stopping = asyncio.Event()
        return self._stopping

    def start(
        self, name: str, loop: Callable[[], Coroutine[Any, Any, None]], *, graceful: bool = False
    ) -> None:
        """Run ``loop()`` as a task named ``name``; it is dead if it ends before shutdown.

        Args:
            graceful: the loop watches :attr:`stopping` and returns by itself; :meth:`stop` waits
                for it up to the grace. Otherwise it is cancelled as soon as shutdown begins.
        """
        task = asyncio.create_task(loop(), name=f"lethe-{name}")
        self._tasks[task] = graceful
        task.add_done_callback(lambda done: self._ended(name, done))

    def every(
        self,
        name: str,
        seconds: float,
        tick: Callable[[], Awaitable[object]],
        *,
        graceful: bool = True,
    ) -> None:
        """Run ``tick()`` now and then every ``seconds`` until shutdown.

        A failing tick is logged by error type (its text may quote target values) and tried again
        at the next interval; the loop itself never ends before shutdown. ``graceful``: a tick
        under way at shutdown may finish within the grace (else it is cancelled at once).
        """

        async def loop() -> None:
            while not self.stopping.is_set():
                try:
                    await tick()
                except Exception as error:
                    logger.warning("background tick failed", loop=name, error_type=type(error).__name__)
                if not await self.pause(seconds):
                    return

        self.start(name, loop, graceful=graceful)

    async def pause(self, seconds: float) -> bool:
        """Sleep ``seconds``; returns False as soon as shutdown begins (then stop looping)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        return not self.stopping.is_set()

    def _ended(self, name: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if task.cancelled():
            return
        error = task.exception()
        if error is None and self.stopping.is_set():
            return  # returned because shutdown began
        reason = type(error).__name__ if error is not None else "returned"
        self._dead[name] = reason
        LOOP_DEATHS.labels(loop=name).inc()
        logger.error("background loop died", loop=name, error_type=reason)

    def dead(self) -> dict[str, str]:
        """Loops that ended while they should run, and why (error type)."""
        return dict(self._dead)

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Shut down: signal :attr:`stopping`, cancel eager loops, give graceful ones the grace."""
        self.stopping.set()
        tasks = dict(self._tasks)
        if not tasks:
            self._stopping = None
            return
        for task, graceful in tasks.items():
            if not graceful:
                task.cancel()
        waiting = [task for task, graceful in tasks.items() if graceful]
        if waiting:
            grace = self.grace_seconds if grace_seconds is None else grace_seconds
            _, late = await asyncio.wait(waiting, timeout=grace)
            for task in late:
                logger.warning("background work cancelled after the grace period", task=task.get_name())
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._stopping = None  # stopped: a later start-up (the same app served again) begins afresh
