"""Verification in the transaction of the statement it checks: rows, values and mentions left."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.erasure.model import ErasureBlocked, ErasureOutcome
from app.engine.erasure.target import Target
from app.engine.erasure.work import TableWork, any_of
from app.engine.erasure_sql import ColumnChange, value_differs
from app.engine.scrub import mentions_left, run_scrubs
from app.engine.verification import CheckedTable, independent_rows_left, rows_left_conditions

__all__ = (
    "check_mentions",
    "independent_check",
    "require_verified",
    "scrub",
    "verify_step",
)


def _changed_columns(work: TableWork) -> list[tuple[ColumnChange, ColumnElement[bool] | None]]:
    """Each changed column with the condition of the rows it changes on (None: every row)."""
    owners: dict[str, tuple[ColumnChange, list[ColumnElement[bool]]]] = {}
    for link in work.links:
        for change in link.changes:
            owners.setdefault(change.column, (change, []))[1].append(link.condition)
    single = len(work.links) == 1
    return [(change, None if single else any_of(conds)) for change, conds in owners.values()]


def _owned(condition: ColumnElement[bool], owned: ColumnElement[bool] | None) -> ColumnElement[bool]:
    return condition if owned is None else and_(condition, owned)


def _checked_table(target: Target, work: TableWork) -> CheckedTable:
    paths = target.graph.paths_for(work.table)
    keeps = work.kept is not None or target.spec(work.table).on_outside_reference == "anonymize"
    links = tuple((p, link.changes) for p, link in zip(paths, work.links, strict=True))
    return CheckedTable(work.table, work.strategy, keeps, links)


async def verify_step(
    conn: AsyncConnection,
    target: Target,
    work: TableWork,
    outcome: ErasureOutcome,
    condition: ColumnElement[bool],
    *,
    last: bool,
) -> None:
    """After a table's statement (or one batch of it), in its transaction, in one ``SELECT``:
    the subject's rows left along the paths (a deleted table, ``last``), the rows of ``condition``
    whose changed columns do not hold their surrogates, and the rows reflected evidence still ties
    to the subject (``last``; see :func:`independent_check`).

    Every surrogate is a function of the row key (and the secret) or a constant, so each changed
    column must hold exactly its surrogate: ``IS DISTINCT FROM`` counts the rows that do not, in
    the database, without fetching them (a NULL surrogate: the rows that are not NULL).
    """
    table = target.tables[work.table]
    counted: list[tuple[str, ColumnElement[bool]]] = []
    if work.strategy == "delete" and last:
        counted.append(("rows", work.gone))
    if work.strategy != "delete":
        counted += [
            ("values", and_(condition, _owned(value_differs(table.c[change.column], change), owned)))
            for change, owned in _changed_columns(work)
        ]
    if last and target.key is not None:
        checked = _checked_table(target, work)
        values = target.identity_values
        evidence = rows_left_conditions(
            target.schema, target.manifest, table, checked, target.key, values, target.dialect
        )
        counted += [("independent", c) for _, c in evidence]
    totals = dict.fromkeys(("rows", "values", "independent"), 0)
    if counted:
        sums = [func.sum(case((c, 1), else_=0)) for _, c in counted]
        scope = or_(*(c for _, c in counted))
        row = (await conn.execute(select(*sums).select_from(table).where(scope))).one()
        for (kind, _), found in zip(counted, row, strict=True):
            totals[kind] += int(found or 0)
    if work.strategy == "delete" and last:
        outcome.verified_rows_left[work.table] = totals["rows"]
    if last and target.key is not None:
        outcome.independent_left[work.table] = totals["independent"]
    left = totals["values"]
    if left or work.strategy != "delete":
        outcome.verified_values_left[work.table] = outcome.verified_values_left.get(work.table, 0) + left


async def independent_check(
    conn: AsyncConnection, target: Target, work: TableWork, outcome: ErasureOutcome
) -> None:
    """Reflected evidence of the subject left in the table (see :mod:`app.engine.verification`)."""
    if target.key is None:
        return
    left = await independent_rows_left(
        conn,
        target.schema,
        target.manifest,
        target.tables[work.table],
        _checked_table(target, work),
        target.key,
        target.identity_values,
    )
    outcome.independent_left[work.table] = sum(left.values())


async def scrub(conn: AsyncConnection, target: Target, outcome: ErasureOutcome, *, own: bool) -> None:
    """Replace the subject's mentions in every scrubbed column, then count what is left."""
    values = target.identity_values
    scrubbed = await run_scrubs(
        conn,
        target.tables,
        target.manifest,
        values,
        batch_size=target.options.batch_size,
        own_transactions=own,
    )
    for label, rows in scrubbed.items():
        outcome.scrubbed[label] = outcome.scrubbed.get(label, 0) + rows


async def check_mentions(conn: AsyncConnection, target: Target, outcome: ErasureOutcome) -> None:
    outcome.mentions_left = await mentions_left(conn, target.tables, target.manifest, target.identity_values)


def require_verified(target: Target, outcome: ErasureOutcome) -> None:
    if not outcome.verified:
        raise ErasureBlocked(
            f"system '{target.manifest.system}': verification found subject data left after "
            f"erasure ({_left_summary(outcome)}); the transaction was rolled back",
            extra={
                "rows_left": outcome.verified_rows_left,
                "values_left": outcome.verified_values_left,
                "mentions_left": outcome.mentions_left,
                "independent_rows_left": outcome.independent_left,
            },
        )


def _left_summary(outcome: ErasureOutcome) -> str:
    """Which checks found what, by table (counts and names only)."""
    parts = []
    for what, counts in (
        ("rows along the manifest's paths", outcome.verified_rows_left),
        ("original values", outcome.verified_values_left),
        ("mentions", outcome.mentions_left),
        (
            "rows found by reflected keys or identity values, independently of the paths",
            outcome.independent_left,
        ),
    ):
        found = {name: n for name, n in counts.items() if n}
        if found:
            parts.append(f"{what}: " + ", ".join(f"{name} {n}" for name, n in sorted(found.items())))
    return "; ".join(parts)
