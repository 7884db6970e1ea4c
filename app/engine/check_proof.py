"""Prove in the target itself that every surrogate erasure would write satisfies every CHECK.

The proof runs over every row of each table erasure writes into (the rows as erasure would
leave them). A table without rows has nothing to run over, yet erasure will write into the rows
it gets later: there the CHECKs are evaluated over one candidate row instead, the surrogates
computed from a sample key (``1``, ``'1'``, a fixed uuid) and every other column NULL (a CHECK
that only NULLs make unknown passes, as it does in the database). Nothing is ever written.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Subquery,
    Table,
    case,
    false,
    func,
    literal,
    literal_column,
    not_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.visitors import replacement_traverse

from app.engine.dialects import dialect_of
from app.engine.erasure_sql import ColumnChange, column_change
from app.engine.reflection import reflect_tables
from app.engine.surrogates import (
    SurrogateError,
    hash_key_from_secret,
    install_sqlite_functions,
)
from app.manifest.issues import Issue
from app.manifest.model import Manifest, TableSpec
from app.manifest.names import manifest_schemas
from app.manifest.schema import CheckInfo, SchemaInfo, TableInfo

__all__ = ("prove_checks",)


async def prove_checks(
    conn: AsyncConnection,
    manifest: Manifest,
    schema: SchemaInfo,
    secret: str | None,
    *,
    tables: Mapping[str, Table] | None = None,
) -> list[Issue]:
    """Evaluate, in the target, every CHECK of every table erasure writes into, over the rows as
    erasure would leave them (each written column replaced by its surrogate expression), or over
    one candidate row when the table has none (see the module).

    One ``SELECT`` per table counts, per CHECK, the rows whose surrogate values would violate it;
    nothing is written. A CHECK whose columns erasure does not write is not evaluated. ``tables``
    are the target's reflected tables when the caller has them (the run's one reflection, see
    :mod:`app.engine.schema_info`); otherwise the tables needed are reflected here. Returns one
    ``check_violation`` issue per violated CHECK and written column it names.
    """
    written_tables = {name: schema.tables[name] for name in _written_tables(manifest, schema)}
    checked = {name: info for name, info in written_tables.items() if info.checks}
    if not checked:
        return []
    if dialect_of(conn).embedded:
        await conn.run_sync(lambda sync: install_sqlite_functions(sync.connection.dbapi_connection))
    reflected = tables
    if reflected is None:
        reflected = (await conn.run_sync(reflect_tables, manifest_schemas(manifest), sorted(checked)))[0]
    issues: list[Issue] = []
    async with conn.begin_nested() if conn.in_transaction() else conn.begin() as transaction:
        for name, info in checked.items():
            written = _written(manifest.tables[name], reflected[name], info, conn.dialect.name, secret)
            issues += await _prove_table(conn, reflected[name], info, written)
        await transaction.rollback()  # nothing stays written, not even by a function a CHECK calls
    return issues


def _written_tables(manifest: Manifest, schema: SchemaInfo) -> list[str]:
    return [
        name
        for name, spec in manifest.tables.items()
        if name in schema.tables and (spec.strategy != "delete" or spec.on_outside_reference == "anonymize")
    ]


def _written(
    spec: TableSpec, table: Table, info: TableInfo, dialect: str, secret: str | None
) -> list[ColumnChange]:
    """The surrogates erasure writes into ``table`` (surrogates that cannot be built at all are
    validation's to report)."""
    hash_key = hash_key_from_secret(secret) if secret else None
    written = []
    for name, column in spec.columns.items():
        if column.strategy == "retain" or name not in table.c:
            continue
        try:
            written.append(column_change(table, info, name, column, dialect, hash_key=hash_key))
        except SurrogateError:
            continue
    return written


def _mentions(check: CheckInfo, column: str) -> bool:
    return re.search(rf"(?<![\w$]){re.escape(column)}(?![\w$])", check.sqltext, re.IGNORECASE) is not None


async def _prove_table(
    conn: AsyncConnection, table: Table, info: TableInfo, written: list[ColumnChange]
) -> list[Issue]:
    checks = [c for c in info.checks if any(_mentions(c, w.column) for w in written)]
    if not checks:
        return []
    replaced: Mapping[str, ColumnElement[Any]] = {w.column: w.value for w in written}
    counts = [func.sum(case((not_(_expression(c)), 1), else_=0)) for c in checks]
    after = select(
        *(replaced[c.name].label(c.name) if c.name in replaced else c for c in table.columns)
    ).subquery(table.name)
    *row, rows = (await conn.execute(select(*counts, func.count()).select_from(after))).one()
    if not rows:  # no rows to prove over: one candidate row (see the module)
        row = list((await conn.execute(select(*counts).select_from(_candidate(table, replaced)))).one())
    issues = []
    for check, violations in zip(checks, row, strict=True):
        if not violations:
            continue
        issues += [
            _issue(table.name, w, check, int(violations)) for w in written if _mentions(check, w.column)
        ]
    return issues


_SAMPLES: dict[type, Any] = {
    int: 1,
    Decimal: Decimal(1),
    float: 1.0,
    str: "1",
    uuid.UUID: uuid.UUID("00000000-0000-4000-8000-000000000001"),
}


def _sample(column: Any) -> ColumnElement[Any] | None:
    """A key value of ``column``'s type for the candidate row (None: the type has no sample)."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return None
    value = _SAMPLES.get(python_type)
    if value is None:
        return None
    if python_type is uuid.UUID and not getattr(column.type, "as_uuid", True):
        value = str(value)
    return literal(value, type_=column.type)


def _candidate(table: Table, replaced: Mapping[str, ColumnElement[Any]]) -> Subquery:
    """One row as erasure would write it into ``table``: key columns take a sample value, written
    columns their surrogate computed from it, the others NULL (typed: ``LEFT JOIN ... ON false``
    of the table to a one-row select yields its columns, all NULL)."""
    keys = {c.name: sample for c in table.primary_key.columns if (sample := _sample(c)) is not None}

    def swap(element: Any, **_: Any) -> Any:
        if isinstance(element, Column) and element.table is table and element.name in keys:
            return keys[element.name]
        return None

    no_options: dict[str, Any] = {}

    one = select(literal(1).label("candidate")).subquery("candidate")
    columns = [
        replacement_traverse(replaced[c.name], no_options, swap).label(c.name)
        if c.name in replaced
        else keys[c.name].label(c.name)
        if c.name in keys
        else c
        for c in table.columns
    ]
    return select(*columns).select_from(one.outerjoin(table, false())).subquery(table.name)


def _expression(check: CheckInfo) -> ColumnElement[bool]:
    """The CHECK's own SQL, as the database reported it, parenthesised as one boolean term."""
    return literal_column(f"({check.sqltext})", Boolean)


def _issue(table: str, written: ColumnChange, check: CheckInfo, rows: int) -> Issue:
    return Issue(
        kind="check_violation",
        path=f"tables.{table}.columns.{written.column}.surrogate",
        table=table,
        column=written.column,
        message=f"column '{table}.{written.column}': the `{written.kind}` surrogate violates CHECK "
        f"constraint {check.label} on {rows} row(s) (proved in the target); name a surrogate the "
        "constraint accepts (a `constant` it allows, `null`), or delete the rows",
    )
