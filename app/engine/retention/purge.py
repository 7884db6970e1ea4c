"""Running a prepared retention policy: the dry run, and the purge in keyset batches."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Delete, Integer, Table, Update, cast, column, func, literal, select
from sqlalchemy.dialects.postgresql import REGCLASS
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import UserDefinedType

from app.engine.keyset import BatchLimits, BatchOutcome, BatchReport, limited, run_batches
from app.engine.retention.prepare import PreparedPurge
from app.lib.clock import utcnow

__all__ = ("DryRun", "dry_run", "purge_in_batches", "restore_cursor")

MAX_WINDOW_FACTOR = 64
MAX_BLOCK_WINDOW_FACTOR = 2
"""A batch's key range spans at most this many times the batch size."""


@dataclass(frozen=True)
class DryRun:
    """What a real run would touch now: the row count and the statement (batched when run)."""

    count: int
    sql: str


class _Tid(UserDefinedType[Any]):
    """PostgreSQL's ``tid`` (a row's physical address: block, offset)."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "tid"


_CTID = column("ctid", _Tid())


def _block_start(block: int) -> ColumnElement[Any]:
    return cast(literal(f"({int(block)},0)"), _Tid())


async def _relation_blocks(connection: AsyncConnection, table: Table) -> int:
    name = connection.dialect.identifier_preparer.format_table(table)
    size = func.pg_relation_size(cast(literal(name), REGCLASS))
    block = cast(func.current_setting("block_size"), Integer)
    return int(await connection.scalar(select(size / block)) or 0)


async def dry_run(connection: AsyncConnection, prepared: PreparedPurge, cutoff: datetime) -> DryRun:
    """Count the due rows and show the purge statement; nothing is changed."""
    now = utcnow()
    where = prepared.condition(cutoff)
    count = await connection.scalar(select(func.count()).select_from(prepared.table).where(where))
    return DryRun(count=int(count or 0), sql=prepared.dialect.render(prepared.statement(cutoff, now)))


async def _block_batch(
    engine: AsyncEngine,
    prepared: PreparedPurge,
    statement: Delete | Update,
    cursor: Sequence[Any] | None,
    window: int,
    limits: BatchLimits,
) -> tuple[BatchReport, bool]:
    """Purge the due rows of the next ``window`` physical blocks (PostgreSQL heap tables)."""
    start = int(cursor[0]) if cursor else 0
    end = start + window
    async with engine.connect() as connection, limited(connection, limits):
        last = end >= await _relation_blocks(connection, prepared.table)
        bounded = statement.where(_block_start(start) <= _CTID)
        if not last:
            bounded = bounded.where(_block_start(end) > _CTID)
        started = time.perf_counter()
        result = await connection.execute(bounded)
    held = time.perf_counter() - started
    return BatchReport(int(result.rowcount or 0), [end], held, window), last


async def _key_batch(
    engine: AsyncEngine,
    prepared: PreparedPurge,
    statement: Delete | Update,
    where: ColumnElement[bool],
    cursor: Sequence[Any] | None,
    window: int,
    limits: BatchLimits,
) -> tuple[BatchReport, bool]:
    """Purge the due rows among the next ``window`` keys after ``cursor``, in one transaction.

    The range is found on the primary key alone (an index-only walk), so the cost of a batch does
    not grow with the number of due rows left, whatever index the planner would pick for the age
    condition. A window wider than the batch size stops at the batch-size-th due row.
    """
    keyset = prepared.keyset
    limit = prepared.policy.batch_size
    edge, nth_due, bounded = keyset.nth(window), keyset.nth(limit, where), statement
    if cursor is not None:
        after = keyset.after(cursor)
        edge, nth_due, bounded = edge.where(after), nth_due.where(after), bounded.where(after)
    async with engine.connect() as connection:
        async with limited(connection, limits):
            upper = (await connection.execute(edge)).first()
            if upper is not None and window > limit:
                capped = nth_due.where(keyset.upto(list(upper)))
                upper = (await connection.execute(capped)).first() or upper
            if upper is not None:
                bounded = bounded.where(keyset.upto(list(upper)))
            started = time.perf_counter()
            result = await connection.execute(bounded)
        held = time.perf_counter() - started
    position = list(upper) if upper is not None else list(cursor or [])
    return BatchReport(int(result.rowcount or 0), position, held, window), upper is None


def _first_window(prepared: PreparedPurge) -> int:
    """Keys (or, on PostgreSQL heap tables, blocks) the first batch spans: ~``batch_size`` rows."""
    limit = prepared.policy.batch_size
    if prepared.rows_per_block is None:
        return limit
    return max(1, limit // prepared.rows_per_block)


def _max_window(prepared: PreparedPurge) -> int:
    factor = MAX_WINDOW_FACTOR if prepared.rows_per_block is None else MAX_BLOCK_WINDOW_FACTOR
    return _first_window(prepared) * factor


async def purge_in_batches(
    engine: AsyncEngine,
    prepared: PreparedPurge,
    *,
    cutoff: datetime,
    purge_at: datetime,
    cursor: Sequence[Any] | None,
    limits: BatchLimits,
    on_batch: Callable[[BatchReport], Awaitable[None]],
) -> BatchOutcome:
    """Purge every due row in keyset batches, each committed on its own, until done or out of time.

    ``on_batch`` runs after each commit (persist the cursor there): a run that dies between two
    batches resumes from the last persisted cursor with the same ``cutoff`` and ``purge_at``; a
    batch committed on the target but not recorded is redone and touches nothing, because the
    condition excludes rows already purged. A lock timeout retries the batch after a pause; a
    statement timeout halves the batch; either, repeated, raises :class:`~app.engine.keyset.BatchStalled`.
    """
    where = prepared.condition(cutoff)
    statement = prepared.statement(cutoff, purge_at)

    async def step(position: Sequence[Any] | None, window: int) -> tuple[BatchReport, bool]:
        if prepared.rows_per_block is not None:
            return await _block_batch(engine, prepared, statement, position, window, limits)
        return await _key_batch(engine, prepared, statement, where, position, window, limits)

    return await run_batches(
        step,
        dialect=prepared.dialect,
        table=prepared.policy.table,
        cursor=cursor,
        window=_first_window(prepared),
        widest=_max_window(prepared),
        size=prepared.policy.batch_size,
        limits=limits,
        on_batch=on_batch,
    )


def restore_cursor(prepared: PreparedPurge, values: Sequence[Any] | None) -> list[Any] | None:
    """A persisted keyset position back in the key columns' Python types (block numbers on
    PostgreSQL heap tables)."""
    if values is None:
        return None
    if prepared.rows_per_block is not None:
        return [int(values[0])]
    return prepared.keyset.restore(values)
