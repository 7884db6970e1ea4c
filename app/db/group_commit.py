"""Group commit: many callers' small writes in one store transaction and one commit per batch.

A write that need not share its caller's transaction (a consent record and its audit event, an
audit-only event) is handed over as a *unit*: the rows that must commit together. One writer
task per process drains a bounded queue, writes every unit waiting at that moment in ONE
transaction (one executemany per statement) with ONE commit, and only then resolves each
caller's future, so :meth:`GroupCommitter.submit` returns once its unit is durable and raises
when it is not. Throughput then follows the number of waiting callers instead of the cost of a
commit each: while one batch commits, the next one gathers.

Failures stay per unit. When the database refuses a batch (a constraint, a bad value, a
deferred check at commit) nothing of it was committed, so its units are written again one by
one and only the unit at fault fails its caller. When the connection is lost, every unit of
the batch fails (at commit the outcome is unknown, exactly as for a caller's own commit) and
nothing is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from prometheus_client import Counter, Histogram
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from app.lib.errors import Unavailable, connection_dropped
from app.lib.logging import get_logger

__all__ = ("BATCH_UNITS", "WAIT_SECONDS", "GroupCommitter", "Write")

logger = get_logger("lethe.store")

BATCH_UNITS = Histogram(
    "lethe_group_commit_batch_units",
    "Units (each one caller's rows) written by one group-commit transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
WAIT_SECONDS = Histogram(
    "lethe_group_commit_wait_seconds",
    "Time from a unit's submission to its commit (queue, batch and commit)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
RETRIED = Counter(
    "lethe_group_commit_retried_batches",
    "Batches the database refused, written again one unit per transaction",
)


class Write(NamedTuple):
    """One row to write: a Core statement and its parameters.

    Units of one batch are grouped by statement object (one executemany each, in the order the
    statements first appear), so build each statement once, at module level, and keep a unit's
    rows independent of each other's order.
    """

    statement: Executable
    params: dict[str, Any]


@dataclass(slots=True)
class _Unit:
    writes: Sequence[Write]
    done: asyncio.Future[None]
    queued_at: float = field(default_factory=time.perf_counter)


def _grouped(units: Sequence[_Unit]) -> list[tuple[Executable, list[dict[str, Any]]]]:
    groups: dict[int, tuple[Executable, list[dict[str, Any]]]] = {}
    for unit in units:
        for write in unit.writes:
            group = groups.get(id(write.statement))
            if group is None:
                groups[id(write.statement)] = (write.statement, [write.params])
            else:
                group[1].append(write.params)
    return list(groups.values())


def _waiting(queue: asyncio.Queue[_Unit | None]) -> list[_Unit]:
    """Take every unit still queued."""
    units: list[_Unit] = []
    while True:
        try:
            unit = queue.get_nowait()
        except asyncio.QueueEmpty:
            return units
        if unit is not None:
            units.append(unit)


def _refused(error: BaseException) -> bool:
    """The database answered with an error: the transaction was rolled back, nothing committed."""
    return isinstance(error, StatementError) and not connection_dropped(error)


class GroupCommitter:
    """One writer task, a bounded queue of units, one transaction and commit per batch.

    Args:
        engine: the store engine; the writer keeps one of its connections while it runs.
        max_batch: at most this many units per transaction.
        queue_size: at most this many units waiting; :meth:`submit` waits for room beyond it
            (backpressure instead of unbounded memory).
        after_commit: called after every commit (wakes the audit sequencer of this process).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int,
        queue_size: int,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue_size = queue_size
        self._after_commit = after_commit
        self._queue: asyncio.Queue[_Unit | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._connection: AsyncConnection | None = None

    def start(self) -> None:
        """Start the writer task on the running event loop (the app's lifespan does)."""
        if self._task is not None:
            return
        self._closing = False
        self._queue = asyncio.Queue(self._queue_size)
        self._task = asyncio.create_task(self._run(self._queue), name="group-commit")

    async def close(self) -> None:
        """Refuse new units, write every unit already queued, then stop the writer."""
        if self._task is None or self._queue is None:
            return
        self._closing = True
        await self._queue.put(None)  # behind every unit already queued
        task, self._task, self._queue = self._task, None, None
        try:
            await task
        finally:
            await self._release()

    async def submit(self, writes: Sequence[Write]) -> None:
        """Write ``writes`` in one transaction with other callers' units; return once committed.

        Raises:
            Unavailable: the writer is not running (not started, or shutting down).
            sqlalchemy.exc.SQLAlchemyError: the unit was refused, or its commit was not confirmed.
        """
        queue = self._queue
        if queue is None or self._closing:
            raise Unavailable("the store writer is not running (the service is shutting down)")
        unit = _Unit(writes=writes, done=asyncio.get_running_loop().create_future())
        await queue.put(unit)
        await unit.done

    async def _run(self, queue: asyncio.Queue[_Unit | None]) -> None:
        batch: list[_Unit] = []
        try:
            while True:
                first = await queue.get()
                if first is None:
                    return
                batch = [first]
                stopping = False
                while len(batch) < self._max_batch:
                    try:
                        unit = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if unit is None:
                        stopping = True
                        break
                    batch.append(unit)
                await self._commit(batch)
                if stopping:
                    return
        finally:  # cancelled (the loop is closing): no caller may wait forever
            for unit in [*batch, *_waiting(queue)]:
                if not unit.done.done():
                    unit.done.set_exception(Unavailable("the store writer stopped before writing this"))

    async def _commit(self, batch: Sequence[_Unit]) -> None:
        """Write a batch; on a refusal write its units one by one; resolve every future."""
        live = [unit for unit in batch if not unit.done.done()]  # a cancelled caller's unit is dropped
        if not live:
            return
        try:
            await self._write(live)
        except Exception as error:
            if len(live) > 1 and _refused(error):
                RETRIED.inc()
                for unit in live:
                    await self._commit([unit])
                return
            if not _refused(error):
                logger.warning("group commit failed", units=len(live), error_type=type(error).__name__)
            for unit in live:
                if not unit.done.done():
                    unit.done.set_exception(error)
            return
        now = time.perf_counter()
        BATCH_UNITS.observe(len(live))
        for unit in live:
            WAIT_SECONDS.observe(now - unit.queued_at)
            if not unit.done.done():
                unit.done.set_result(None)
        if self._after_commit is not None:
            self._after_commit()

    async def _write(self, units: Sequence[_Unit]) -> None:
        """One transaction on the writer's own connection (kept between batches: no pool checkout,
        statements stay prepared); after any failure the connection goes back to the pool."""
        if self._connection is None:
            self._connection = await self._engine.connect()
        connection = self._connection
        try:
            transaction = await connection.begin()
            for statement, rows in _grouped(units):
                await connection.execute(statement, rows)
            await transaction.commit()
        except BaseException:
            await self._release()
            raise

    async def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()  # rolls back whatever is left of a failed transaction
