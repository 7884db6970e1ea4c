"""Background loops under watch: a loop that dies is counted and makes ``/readyz`` fail."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client import Counter

from app.lib.logging import get_logger

__all__ = ("LOOP_DEATHS", "LoopWatch")

logger = get_logger("lethe.loops")

LOOP_DEATHS = Counter(
    "lethe_background_loop_deaths", "Background loops that ended with an error, by loop", ["loop"]
)


class LoopWatch:
    """The background loops of one process, started by name and watched until shutdown.

    A loop is meant to run until cancelled; one that returns or raises is dead: it is logged
    (error type only), counted in :data:`LOOP_DEATHS`, and listed by :meth:`dead` so the
    readiness probe stops sending traffic to a replica whose scheduler silently stopped.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._dead: dict[str, str] = {}

    def start(self, name: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``loop()`` as a task named ``name``."""
        task = asyncio.create_task(loop(), name=f"lethe-{name}")
        task.add_done_callback(lambda done: self._ended(name, done))
        self._tasks[name] = task

    def _ended(self, name: str, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        reason = type(error).__name__ if error is not None else "returned"
        self._dead[name] = reason
        LOOP_DEATHS.labels(loop=name).inc()
        logger.error("background loop died", loop=name, error_type=reason)

    def dead(self) -> dict[str, str]:
        """Loops that ended while they should run, and why (error type)."""
        return dict(self._dead)

    async def stop(self) -> None:
        """Cancel every loop and wait for it (application shutdown)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
