"""One reflection of a target: its SQLAlchemy tables and the manifest's pure ``SchemaInfo`` of them.

Validation, the CHECK proof, the erasure plan and its execution all read the same
:class:`Reflection`: the target's schemas are reflected once per run (one ``MetaData.reflect``
per schema, whose multi-table queries read every table at once), and ``SchemaInfo`` is derived
from those tables, completed where a dialect shows a constraint only to the inspector.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import CheckConstraint, ForeignKeyConstraint, MetaData, Table, UniqueConstraint
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.reflection import (
    check_infos,
    column_info,
    inspector_checks,
    inspector_unique,
    json_check_kind,
    reflect_tables,
)
from app.manifest.names import table_key
from app.manifest.schema import CheckInfo, ColumnInfo, ForeignKeyInfo, SchemaInfo, TableInfo

__all__ = (
    "Reflection",
    "column_info_of",
    "reflect",
    "reflect_schema",
    "reflect_sync",
    "schema_from_metadata",
    "schema_from_tables",
    "table_info_of",
)


@dataclass(frozen=True)
class Reflection:
    """The target's tables by manifest name, and the ``SchemaInfo`` of the same tables."""

    tables: dict[str, Table]
    schema: SchemaInfo


def reflect_sync(
    connection: Connection,
    named: Sequence[str] = (),
    *,
    every: bool = False,
    only: Collection[str] | None = None,
) -> Reflection:
    """Reflect the target once (see :func:`app.engine.reflection.reflect_tables`; ``run_sync``).

    Raises:
        ManifestInvalid: a named schema does not exist (or the target is SQLite).
    """
    tables, schemas = reflect_tables(connection, named, only, every=every)
    checks = inspector_checks(connection, schemas)
    unique = inspector_unique(connection, tables)
    keys = {table: key for key, table in tables.items()}
    infos = {
        key: _table_info(
            key,
            table,
            keys,
            checks=None if checks is None else checks.get(key, ()),
            unique=unique.get(key, set()),
        )
        for key, table in sorted(tables.items())
    }
    return Reflection(tables, SchemaInfo(infos, schemas=tuple(schemas.names)))


async def reflect(
    connection: AsyncConnection,
    named: Sequence[str] = (),
    *,
    every: bool = False,
    only: Collection[str] | None = None,
) -> Reflection:
    """Reflect the target behind an async connection once (PostgreSQL, MariaDB/MySQL, SQLite)."""
    return await connection.run_sync(lambda sync: reflect_sync(sync, named, every=every, only=only))


async def reflect_schema(
    connection: AsyncConnection, named: Sequence[str] = (), *, every: bool = False
) -> SchemaInfo:
    """The ``SchemaInfo`` of every table of the target's schemas (see :func:`reflect`)."""
    return (await reflect(connection, named, every=every)).schema


def _checks(table: Table) -> tuple[CheckInfo, ...]:
    return check_infos(
        (c.name if isinstance(c.name, str) else None, str(c.sqltext))
        for c in table.constraints
        if isinstance(c, CheckConstraint)
    )


def column_info_of(table: Table, name: str) -> ColumnInfo:
    """One column of a reflected table as validation sees it (what surrogates are chosen by)."""
    column = table.c[name]
    pk = {c.name for c in table.primary_key.columns}
    info = column_info(name, column.type, nullable=bool(column.nullable), primary_key=name in pk)
    return json_check_kind(info, _checks(table))


def _table_info(
    key: str,
    table: Table,
    keys: Mapping[Table, str],
    *,
    checks: tuple[CheckInfo, ...] | None = None,
    unique: Collection[tuple[str, ...]] = (),
) -> TableInfo:
    """``checks`` replaces the table's CHECKs and ``unique`` adds unique sets where the dialect
    shows them only to the inspector (see :func:`reflect_sync`)."""
    pk = tuple(c.name for c in table.primary_key.columns)
    checks = _checks(table) if checks is None else checks
    columns = {
        c.name: json_check_kind(
            column_info(c.name, c.type, nullable=bool(c.nullable), primary_key=c.name in pk), checks
        )
        for c in table.columns
    }
    unique = set(unique) | {
        tuple(c.name for c in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    }
    unique |= {tuple(c.name for c in index.columns) for index in table.indexes if index.unique}
    unique |= {(c.name,) for c in table.columns if c.unique}
    foreign_keys = tuple(
        ForeignKeyInfo(
            name=fk.name if isinstance(fk.name, str) and fk.name else None,
            table=key,
            columns=tuple(e.parent.name for e in fk.elements),
            referred_table=keys.get(fk.referred_table, fk.referred_table.name),
            referred_columns=tuple(e.column.name for e in fk.elements),
        )
        for fk in sorted(table.foreign_key_constraints, key=_foreign_key_order)
    )
    return TableInfo(key, columns, pk, tuple(sorted(u for u in unique if u)), foreign_keys, checks)


def table_info_of(table: Table) -> TableInfo:
    """One reflected table as validation sees it (key, unique column sets, foreign keys)."""
    return _table_info(table.name, table, {})


def _foreign_key_order(fk: ForeignKeyConstraint) -> tuple[str, tuple[str, ...], str]:
    """A stable order (SQLite's keys have no names; the table holds them in a set)."""
    return (str(fk.name or ""), tuple(e.parent.name for e in fk.elements), fk.referred_table.name)


def schema_from_tables(tables: Mapping[str, Table]) -> SchemaInfo:
    """The ``SchemaInfo`` of reflected tables keyed by manifest table name (``reflect_tables``)."""
    keys = {table: key for key, table in tables.items()}
    return SchemaInfo({key: _table_info(key, t, keys) for key, t in sorted(tables.items())})


def schema_from_metadata(metadata: MetaData, default_schema: str | None = None) -> SchemaInfo:
    """The ``SchemaInfo`` of every table of ``metadata`` (same content as ``reflect_schema``)."""
    return schema_from_tables(
        {table_key(t.schema, t.name, default_schema): t for t in metadata.tables.values()}
    )
