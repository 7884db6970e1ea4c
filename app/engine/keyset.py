"""Keyset batches: walk a table in key order, one short transaction per batch.

The one batcher of the engine. A :class:`Keyset` builds the SQL of a position in a table's key
(single or composite): rows after a cursor, up to a bound, the bound of the next batch. A cursor
is stored as JSON (:func:`json_cursor`) and read back in the key's Python types
(:meth:`Keyset.restore`). :func:`limited` bounds a batch's transaction with lock and statement
timeouts in the database's own terms, and :func:`run_batches` drives batches until done or out
of time, retrying lock timeouts, halving the batch after a statement timeout, and raising
:class:`BatchStalled` when either keeps happening.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, Select, Table, and_, func, literal, select, tuple_
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.dialects import Dialect, dialect_of
from app.engine.errors import EngineError

__all__ = (
    "MAX_ATTEMPTS_PER_BATCH",
    "BatchLimits",
    "BatchOutcome",
    "BatchReport",
    "BatchStalled",
    "BatchStep",
    "Keyset",
    "json_cursor",
    "limited",
    "next_window",
    "run_batches",
)

MAX_ATTEMPTS_PER_BATCH = 5


@dataclass(frozen=True)
class BatchLimits:
    """Per-batch safety limits and the overall runtime budget of one run (segment)."""

    lock_timeout_ms: int = 2000
    statement_timeout_ms: int = 30_000
    max_runtime_seconds: float = 600.0
    retry_pause_seconds: float = 0.2


@dataclass(frozen=True)
class BatchReport:
    """One committed batch: rows it touched, where the keyset stands, how long locks were held."""

    rows: int
    cursor: list[Any]
    lock_seconds: float
    window: int
    """How many consecutive keys the batch's range spanned (adapts to how sparse due rows are)."""


@dataclass(frozen=True)
class BatchOutcome:
    """How a run (segment) ended: ``finished`` False when the runtime budget ran out first."""

    finished: bool
    rows: int
    batches: int
    cursor: list[Any] | None
    longest_lock_seconds: float


class BatchStalled(EngineError):
    """A batch kept hitting lock or statement timeouts; the run stops, resumable later."""


@dataclass(frozen=True)
class Keyset:
    """A table's key (one column or several) as SQL positions."""

    columns: tuple[Column[Any], ...]

    @classmethod
    def of(cls, table: Table) -> Keyset:
        """The table's primary key (no columns: the table cannot be walked)."""
        return cls(tuple(table.primary_key.columns))

    @property
    def expression(self) -> ColumnElement[Any]:
        """The key: a column, or a row value ``(a, b)`` compared lexicographically."""
        if len(self.columns) == 1:
            return self.columns[0]
        return tuple_(*self.columns)

    def value(self, cursor: Sequence[Any]) -> Any:
        """A cursor as a value :attr:`expression` compares with."""
        return cursor[0] if len(self.columns) == 1 else tuple_(*(literal(v) for v in cursor))

    def after(self, cursor: Sequence[Any]) -> ColumnElement[bool]:
        """Rows past ``cursor``."""
        past: ColumnElement[bool] = self.expression > self.value(cursor)
        return past

    def upto(self, cursor: Sequence[Any]) -> ColumnElement[bool]:
        """Rows up to and including ``cursor``."""
        upto: ColumnElement[bool] = self.expression <= self.value(cursor)
        return upto

    def between(self, after: Sequence[Any] | None, upto: Sequence[Any]) -> ColumnElement[bool]:
        """Rows of one batch: past ``after`` (None: from the start) up to ``upto``."""
        return self.upto(upto) if after is None else and_(self.after(after), self.upto(upto))

    def nth(self, n: int, where: ColumnElement[bool] | None = None) -> Select[Any]:
        """The ``n``-th key (matching ``where``), in key order; add :meth:`after` to move on."""
        query = select(*self.columns)
        if where is not None:
            query = query.where(where)
        return query.order_by(*self.columns).offset(n - 1).limit(1)

    def last_of_next(self, where: ColumnElement[bool], after: Sequence[Any] | None, size: int) -> Select[Any]:
        """The last key of the next ``size`` rows matching ``where`` (read it with :meth:`bound`)."""
        names = ["k"] if len(self.columns) == 1 else [f"k{i}" for i in range(len(self.columns))]
        chosen = select(*(c.label(n) for c, n in zip(self.columns, names, strict=True))).where(where)
        if after is not None:
            chosen = chosen.where(self.after(after))
        sub = chosen.order_by(*self.columns).limit(size).subquery()
        if len(self.columns) == 1:
            return select(func.max(sub.c.k))
        return select(*sub.c).order_by(*(c.desc() for c in sub.c)).limit(1)

    async def bound(
        self, connection: AsyncConnection, where: ColumnElement[bool], after: Sequence[Any] | None, size: int
    ) -> list[Any] | None:
        """The upper key of the next batch of ``size`` rows matching ``where`` (None: none left)."""
        row = (await connection.execute(self.last_of_next(where, after, size))).first()
        if row is None or all(v is None for v in row):
            return None
        return list(row)

    def restore(self, values: Sequence[Any] | None) -> list[Any] | None:
        """A cursor saved by :func:`json_cursor` back in the key columns' Python types."""
        if values is None:
            return None
        restored: list[Any] = []
        for key_column, value in zip(self.columns, values, strict=True):
            try:
                python_type = key_column.type.python_type
            except NotImplementedError:
                python_type = object
            if isinstance(value, str) and python_type in (date, datetime):
                restored.append(python_type.fromisoformat(value))
            elif isinstance(value, str) and python_type is uuid.UUID:
                restored.append(uuid.UUID(value))
            else:
                restored.append(value)
        return restored


def json_cursor(values: Sequence[Any]) -> list[Any]:
    """A keyset position as JSON-safe values (dates, times and UUIDs as strings)."""
    return [v if isinstance(v, bool | int | float | str) or v is None else str(v) for v in values]


def next_window(window: int, rows: int, limit: int, widest: int) -> int:
    """Widen the range while batches come back sparse, narrow it when they fill up."""
    if rows * 4 < limit * 3:
        return min(window * 2, widest)
    if rows >= limit:
        return max(1, window // 2)
    return window


@asynccontextmanager
async def limited(connection: AsyncConnection, limits: BatchLimits) -> AsyncIterator[None]:
    """One transaction whose lock waits and statements are bounded by ``limits``; session
    settings the database keeps past the transaction are put back afterwards."""
    dialect = dialect_of(connection)
    saved: list[Any] = []
    try:
        async with connection.begin():
            saved = await dialect.set_timeouts(
                connection, limits.lock_timeout_ms, limits.statement_timeout_ms
            )
            yield
    finally:
        await dialect.reset_timeouts(connection, saved)


BatchStep = Callable[[list[Any] | None, int], Awaitable[tuple[BatchReport, bool]]]
"""Runs and commits the batch after a cursor over a window; returns its report and whether it
was the last."""


async def run_batches(
    step: BatchStep,
    *,
    dialect: Dialect,
    table: str,
    cursor: Sequence[Any] | None,
    window: int,
    widest: int,
    size: int,
    limits: BatchLimits,
    on_batch: Callable[[BatchReport], Awaitable[None]],
) -> BatchOutcome:
    """Run ``step`` batch after batch from ``cursor`` until one is the last or time runs out.

    The window starts at ``window`` and adapts to how full batches come back (up to ``widest``,
    against ``size`` rows per batch). ``on_batch`` runs after each commit (persist the cursor
    there). A lock timeout retries the batch after a pause; a statement timeout halves its
    window; either, repeated, raises :class:`BatchStalled` naming ``table``.
    """
    deadline = time.monotonic() + limits.max_runtime_seconds
    rows, batches, longest = 0, 0, 0.0
    position = list(cursor) if cursor is not None else None
    while time.monotonic() < deadline:
        report, last = await _with_retries(step, dialect, table, position, window, limits)
        rows, batches, longest = rows + report.rows, batches + 1, max(longest, report.lock_seconds)
        position = report.cursor or position
        window = next_window(report.window, report.rows, size, widest)
        await on_batch(report)
        if last:
            return BatchOutcome(True, rows, batches, position, longest)
    return BatchOutcome(False, rows, batches, position, longest)


async def _with_retries(
    step: BatchStep,
    dialect: Dialect,
    table: str,
    cursor: list[Any] | None,
    window: int,
    limits: BatchLimits,
) -> tuple[BatchReport, bool]:
    for attempt in range(1, MAX_ATTEMPTS_PER_BATCH + 1):
        try:
            return await step(cursor, window)
        except DBAPIError as exc:
            kind = dialect.timeout_kind(exc)
            if kind is None:
                raise
            if attempt == MAX_ATTEMPTS_PER_BATCH:
                message = f"{kind} timeout {attempt} times in a row on table '{table}'"
                raise BatchStalled(message) from exc
            if kind == "statement":
                window = max(1, window // 2)
            await asyncio.sleep(limits.retry_pause_seconds * attempt)
    raise AssertionError("unreachable")  # pragma: no cover
