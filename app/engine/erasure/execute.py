"""Execution: one transaction per system, or resumable steps and keyset batches for large tables."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.engine.dialects import dialect_of
from app.engine.erasure.model import ErasureBlocked, ErasureOptions, ErasureOutcome, SaveCursor, SystemPlan
from app.engine.erasure.plan import outside_counts
from app.engine.erasure.target import Target, load_target
from app.engine.erasure.verify import check_mentions, independent_check, require_verified, scrub, verify_step
from app.engine.erasure.work import TableWork, all_work, batchable, count_rows, sizes_of
from app.engine.integrity import IntegrityDetail, constraint_refusal, integrity_detail
from app.engine.keyset import Keyset, json_cursor
from app.engine.schema_info import Reflection
from app.engine.scrub import identity_values
from app.engine.scrub import prepare_connection as prepare_scrub_connection
from app.engine.subjects import Binds, resolve_subject
from app.engine.surrogates import install_sqlite_functions
from app.manifest.model import Manifest

__all__ = ("execute_erasure",)


async def _prepare_connection(conn: AsyncConnection) -> None:
    if dialect_of(conn).embedded:
        await conn.exec_driver_sql("PRAGMA secure_delete=ON")
        await conn.run_sync(lambda sync: install_sqlite_functions(sync.connection.dbapi_connection))
        await prepare_scrub_connection(conn)


async def _check_outside(conn: AsyncConnection, target: Target, works: Sequence[TableWork]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for work in works:
        for ref in await outside_counts(conn, target, work):
            counts[f"{ref.referencing_table}.{','.join(ref.referencing_columns)}"] = ref.rows
            if ref.action == "fail":
                raise ErasureBlocked(
                    f"system '{target.manifest.system}': foreign key {ref.constraint} from table "
                    f"'{ref.referencing_table}' references {ref.rows} row(s) of "
                    f"'{ref.referenced_table}' that erasure deletes; nothing was changed (set "
                    f"on_outside_reference of '{ref.referenced_table}' to set_null, delete or "
                    "anonymize, or manage the referencing table)",
                    extra={
                        "system": target.manifest.system,
                        "constraint": ref.constraint,
                        "referencing_table": ref.referencing_table,
                    },
                )
    return counts


async def _run_step(
    conn: AsyncConnection,
    target: Target,
    work: TableWork,
    outcome: ErasureOutcome,
    *,
    window: ColumnElement[bool] | None = None,
    first: bool = True,
    last: bool = True,
) -> int:
    """Run one table's statement (or one keyset batch of it) and verify it, in ``conn``'s
    transaction; returns the rows changed."""
    condition = work.condition if window is None else and_(work.condition, window)
    statements = list(work.before) if first else []
    statement = work.main
    if statement is not None and window is not None:
        statement = statement.where(window)
    changed = 0
    try:
        for before in statements:
            await conn.execute(before)
        if statement is not None:
            changed = max((await conn.execute(statement)).rowcount, 0)
    except DBAPIError as exc:
        refusal = constraint_refusal(exc)
        if refusal is None:
            raise
        raise _refused(target.manifest.system, work.table, refusal) from exc
    bucket = outcome.deleted if work.strategy == "delete" else outcome.anonymized
    if statement is not None:
        bucket[work.table] = bucket.get(work.table, 0) + changed
    await verify_step(conn, target, work, outcome, condition, last=last)
    return changed


async def execute_erasure(
    engine: AsyncEngine,
    manifest: Manifest,
    identities: Mapping[str, str],
    options: ErasureOptions,
    *,
    cursor: Mapping[str, Any] | None = None,
    save_cursor: SaveCursor | None = None,
    reflection: Reflection | None = None,
    plan: SystemPlan | None = None,
) -> ErasureOutcome:
    """Erase the subject in one system; returns counts and the verification result.

    ``reflection`` and ``plan`` are what planning this run already read (the target's one
    reflection, and the subject's rows per table, which decide batching); without them execution
    reflects and counts itself.

    One transaction for the whole system unless a table holds more than
    ``options.batch_threshold`` of the subject's rows: then every table is a step of its own and
    large tables run in keyset batches of ``options.batch_size``, each batch its own transaction,
    the cursor handed to ``save_cursor`` after each commit. Passing the last saved cursor back
    resumes at the next batch. A subject nobody matches is a no-op (``found`` is False).

    Raises:
        ErasureBlocked: an outside reference blocks the erasure (nothing changed), or a
            constraint _refused the change (the system's transaction rolled back).
        ManifestInvalid: the manifest does not fit the target's schema.
    """
    try:
        async with engine.connect() as conn:
            await _prepare_connection(conn)
            target = await load_target(conn, manifest, options, reflection)
            subject_table = target.tables[manifest.subject.table]
            key = await resolve_subject(conn, manifest, subject_table, identities, options.tenant)
            outcome = ErasureOutcome(manifest.system, found=key is not None, subject_key=key)
            if cursor:
                _restore(outcome, cursor)
            if key is None:
                await conn.rollback()
                return outcome
            target.key = key
            target.identity_values = await identity_values(conn, subject_table, manifest, key)
            works = all_work(target, Binds(key))
            planned = {t.table: t.rows for t in plan.tables} if plan is not None and plan.found else {}
            if set(planned) != {w.table for w in works}:
                planned = await sizes_of(conn, target, works)
            sizes = planned
            await conn.rollback()
            batched = any(n > options.batch_threshold and batchable(target, t) for t, n in sizes.items())
            if not batched and not cursor:
                await _single_transaction(conn, target, works, outcome)
            else:
                await _stepwise(conn, target, works, sizes, outcome, cursor, save_cursor)
    except IntegrityError as exc:
        raise _refused(manifest.system, manifest.subject.table, integrity_detail(exc)) from exc
    return outcome


def _refused(system: str, table: str, detail: IntegrityDetail) -> ErasureBlocked:
    """The target _refused a statement: name the constraint and the table (never a value)."""
    return ErasureBlocked(
        f"system '{system}': the target _refused the erasure of table '{table}': "
        f"{detail.describe(table)} does not hold; the transaction was rolled back",
        extra={
            "system": system,
            "table": detail.table or table,
            "constraint": detail.constraint,
            "constraint_kind": detail.kind,
        },
    )


async def _single_transaction(
    conn: AsyncConnection, target: Target, works: Sequence[TableWork], outcome: ErasureOutcome
) -> None:
    async with conn.begin():
        outcome.outside_references = await _check_outside(conn, target, works)
        await scrub(conn, target, outcome, own=False)
        for work in works:
            await _run_step(conn, target, work, outcome)
        await check_mentions(conn, target, outcome)
        require_verified(target, outcome)


def _restore(outcome: ErasureOutcome, cursor: Mapping[str, Any]) -> None:
    outcome.deleted = dict(cursor.get("deleted", {}))
    outcome.anonymized = dict(cursor.get("anonymized", {}))
    outcome.batches = int(cursor.get("batches", 0))
    outcome.scrubbed = dict(cursor.get("scrubbed", {}))


def _cursor(outcome: ErasureOutcome, step: int, after: Any) -> dict[str, Any]:
    return {
        "step": step,
        "after": after,
        "deleted": dict(outcome.deleted),
        "anonymized": dict(outcome.anonymized),
        "batches": outcome.batches,
        "scrubbed": dict(outcome.scrubbed),
        "scrub_done": True,
    }


async def _stepwise(
    conn: AsyncConnection,
    target: Target,
    works: Sequence[TableWork],
    sizes: Mapping[str, int],
    outcome: ErasureOutcome,
    cursor: Mapping[str, Any] | None,
    save_cursor: SaveCursor | None,
) -> None:
    """Each table its own step, large ones in keyset batches; resumable from ``cursor``."""
    start = int(cursor["step"]) if cursor else 0
    after = cursor.get("after") if cursor else None
    async with conn.begin():
        outcome.outside_references = await _check_outside(conn, target, works[start:])
    if not (cursor and cursor.get("scrub_done")):
        # first, while the subject row still holds the identity values a resumed run re-reads
        await scrub(conn, target, outcome, own=True)
        async with conn.begin():
            await check_mentions(conn, target, outcome)
        require_verified(target, outcome)
        if save_cursor is not None:
            await save_cursor(_cursor(outcome, start, after))
    for index in range(start, len(works)):
        work = works[index]
        if sizes[work.table] > target.options.batch_threshold and batchable(target, work.table):
            await _batches(conn, target, work, outcome, index, after, save_cursor)
        else:
            async with conn.begin():
                await _run_step(conn, target, work, outcome)
                require_verified(target, outcome)
            outcome.batches += 1
            if save_cursor is not None:
                await save_cursor(_cursor(outcome, index + 1, None))
        after = None


async def _batches(
    conn: AsyncConnection,
    target: Target,
    work: TableWork,
    outcome: ErasureOutcome,
    step: int,
    saved: Any,
    save_cursor: SaveCursor | None,
) -> None:
    """Keyset batches over the table's key (one column or several); each batch commits, then
    the cursor. ``saved`` is the ``after`` of a saved cursor: a list of key values, or a single
    value as cursors of single-column keys were saved before."""
    table = target.tables[work.table]
    keyset = Keyset.of(table)
    after = keyset.restore(_key_values(saved))
    first = after is None
    while True:
        async with conn.begin():
            upto = await keyset.bound(conn, work.condition, after, target.options.batch_size)
            if upto is None:
                outcome.verified_rows_left[work.table] = (
                    await count_rows(conn, table, work.gone) if work.strategy == "delete" else 0
                )
                await independent_check(conn, target, work, outcome)
                require_verified(target, outcome)
                break
            window = keyset.between(after, upto)
            await _run_step(conn, target, work, outcome, window=window, first=first, last=False)
            require_verified(target, outcome)
        outcome.batches += 1
        first = False
        after = upto
        if save_cursor is not None:
            await save_cursor(_cursor(outcome, step, json_cursor(upto)))
        if target.options.batch_delay_seconds:
            await asyncio.sleep(target.options.batch_delay_seconds)
    if save_cursor is not None:
        await save_cursor(_cursor(outcome, step + 1, None))


def _key_values(saved: Any) -> list[Any] | None:
    """A saved ``after`` as a list of key values (None: from the start of the table)."""
    if saved is None:
        return None
    return list(saved) if isinstance(saved, list) else [saved]
