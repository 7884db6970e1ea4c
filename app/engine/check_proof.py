"""Prove in the target itself that every surrogate erasure would write satisfies every CHECK."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Table, case, func, literal_column, not_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.reflection import reflect_tables
from app.engine.surrogates import (
    SurrogateContext,
    SurrogateError,
    hash_key_from_secret,
    install_sqlite_functions,
    resolved_surrogate,
    surrogate_expression,
    surrogate_label,
)
from app.manifest.issues import Issue
from app.manifest.model import Manifest, Surrogate, TableSpec
from app.manifest.names import manifest_schemas
from app.manifest.schema import CheckInfo, SchemaInfo, TableInfo

__all__ = ("prove_checks",)


@dataclass(frozen=True)
class _Written:
    """A column erasure writes, with its surrogate as SQL and as a label."""

    column: str
    value: Any
    label: str


async def prove_checks(
    conn: AsyncConnection, manifest: Manifest, schema: SchemaInfo, secret: str | None
) -> list[Issue]:
    """Evaluate, in the target, every CHECK of every table erasure writes into, over the rows as
    erasure would leave them (each written column replaced by its surrogate expression).

    One ``SELECT`` per table counts, per CHECK, the rows whose surrogate values would violate it;
    nothing is written. A CHECK whose columns erasure does not write is not evaluated. Returns one
    ``check_violation`` issue per violated CHECK and written column it names.
    """
    tables = {name: schema.tables[name] for name in _written_tables(manifest, schema)}
    tables = {name: info for name, info in tables.items() if info.checks}
    if not tables:
        return []
    if conn.dialect.name == "sqlite":
        await conn.run_sync(lambda sync: install_sqlite_functions(sync.connection.dbapi_connection))
    reflected, _ = await conn.run_sync(reflect_tables, manifest_schemas(manifest), sorted(tables))
    issues: list[Issue] = []
    for name, info in tables.items():
        written = _written(manifest.tables[name], reflected[name], info, conn.dialect.name, secret)
        issues += await _prove_table(conn, reflected[name], info, written)
    return issues


def _written_tables(manifest: Manifest, schema: SchemaInfo) -> list[str]:
    return [
        name
        for name, spec in manifest.tables.items()
        if name in schema.tables and (spec.strategy != "delete" or spec.on_outside_reference == "anonymize")
    ]


def _written(
    spec: TableSpec, table: Table, info: TableInfo, dialect: str, secret: str | None
) -> list[_Written]:
    """The surrogates erasure writes into ``table`` (surrogates that cannot be built at all are
    validation's to report)."""
    hash_key = hash_key_from_secret(secret) if secret else None
    written = []
    for name, column in spec.columns.items():
        if column.strategy == "retain" or name not in table.c:
            continue
        ctx = SurrogateContext(
            table,
            name,
            info.primary_key,
            dialect,
            unique=info.column_is_unique(name),
            hash_key=hash_key,
            table_info=info,
        )
        wanted = Surrogate(kind="null") if column.strategy == "delete" else column.surrogate_spec
        try:
            surrogate = resolved_surrogate(ctx, wanted)
            written.append(_Written(name, surrogate_expression(ctx, surrogate), surrogate_label(surrogate)))
        except SurrogateError:
            continue
    return written


def _mentions(check: CheckInfo, column: str) -> bool:
    return re.search(rf"(?<![\w$]){re.escape(column)}(?![\w$])", check.sqltext, re.IGNORECASE) is not None


async def _prove_table(
    conn: AsyncConnection, table: Table, info: TableInfo, written: list[_Written]
) -> list[Issue]:
    checks = [c for c in info.checks if any(_mentions(c, w.column) for w in written)]
    if not checks:
        return []
    replaced: Mapping[str, Any] = {w.column: w.value for w in written}
    after = select(
        *(replaced[c.name].label(c.name) if c.name in replaced else c for c in table.columns)
    ).subquery(table.name)
    counts = [func.sum(case((not_(_expression(c)), 1), else_=0)) for c in checks]
    async with conn.begin_nested() if conn.in_transaction() else conn.begin() as transaction:
        row = (await conn.execute(select(*counts).select_from(after))).one()
        await transaction.rollback()
    issues = []
    for check, violations in zip(checks, row, strict=True):
        if not violations:
            continue
        issues += [
            _issue(table.name, w, check, int(violations)) for w in written if _mentions(check, w.column)
        ]
    return issues


def _expression(check: CheckInfo) -> ColumnElement[bool]:
    """The CHECK's own SQL, as the database reported it, parenthesised as one boolean term."""
    return literal_column(f"({check.sqltext})", Boolean)


def _issue(table: str, written: _Written, check: CheckInfo, rows: int) -> Issue:
    return Issue(
        kind="check_violation",
        path=f"tables.{table}.columns.{written.column}.surrogate",
        table=table,
        column=written.column,
        message=f"column '{table}.{written.column}': the `{written.label}` surrogate violates CHECK "
        f"constraint {check.label} on {rows} row(s) (proved in the target); name a surrogate the "
        "constraint accepts (a `constant` it allows, `null`), or delete the rows",
    )
