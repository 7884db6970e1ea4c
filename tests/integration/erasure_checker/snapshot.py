"""Snapshots of a target database: every row of every base table, each column rendered as text by
the database itself, keyed by primary key, across the default schema and named schemas."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, TableClause, Text, cast, column, exc, func, inspect, select, table, text
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ("ForeignKey", "Snapshot", "TableSnapshot", "plain", "table_clause", "take_snapshot")

Row = dict[str, str | None]
_NOT_SEARCHED = (
    sqltypes.Integer,
    sqltypes.Numeric,
    sqltypes.Float,
    sqltypes.Boolean,
    sqltypes.Date,
    sqltypes.DateTime,
    sqltypes.Time,
    sqltypes.Interval,
    sqltypes.LargeBinary,
    sqltypes._Binary,
)


@dataclass(frozen=True)
class ForeignKey:
    """A declared foreign key between two snapshot tables (by snapshot key)."""

    name: str | None
    table: str
    columns: tuple[str, ...]
    referred_table: str
    referred_columns: tuple[str, ...]


@dataclass
class TableSnapshot:
    """One table: rows by primary key (all columns as the database renders them as text).

    ``text_columns`` are the columns that can hold text a person wrote or that identifies them
    (everything but numbers, booleans, dates, times and binary): where leftovers are searched.
    A table without primary key is keyed by the whole row and a running number.
    """

    key: str
    schema: str | None
    name: str
    columns: tuple[str, ...]
    primary_key: tuple[str, ...]
    rows: dict[tuple[str | None, ...], Row]
    text_columns: frozenset[str]
    not_null: frozenset[str]
    unique: tuple[tuple[str, ...], ...]
    checks: tuple[tuple[str, str], ...] = ()

    def key_of(self, row: Row) -> tuple[str | None, ...]:
        """The primary key of ``row`` (as text)."""
        return tuple(row[c] for c in self.primary_key)


@dataclass
class Snapshot:
    """Every base table of the target (partitions are read through their parent)."""

    dialect: str
    tables: dict[str, TableSnapshot]
    foreign_keys: list[ForeignKey] = field(default_factory=list)

    def table(self, name: str) -> TableSnapshot:
        """The table a manifest names: ``orders``, ``billing.invoices`` or ``public.orders``."""
        if name in self.tables:
            return self.tables[name]
        bare = name.rsplit(".", 1)[-1]
        matches = [t for t in self.tables.values() if t.name == bare and (t.schema is None or "." in name)]
        if "." in name:
            schema = name.rsplit(".", 1)[0]
            matches = [t for t in matches if t.schema in (schema, None)]
        if len(matches) != 1:
            raise KeyError(f"no single table '{name}' in the snapshot ({sorted(self.tables)})")
        return matches[0]


def plain(dialect: str, value: str | None) -> str | None:
    """The value without SQLite's literal quoting (``'O''Brien'`` -> ``O'Brien``), for joins."""
    if value is None or dialect != "sqlite":
        return value
    if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


def _rendered(dialect: str, column: Any) -> Any:
    """The column as text, rendered by the database: byte-exact and type-tagged on SQLite."""
    if dialect == "sqlite":
        return func.quote(column)
    if dialect == "postgresql":
        return cast(column, Text)
    if isinstance(column.type, sqltypes.LargeBinary | sqltypes._Binary | sqltypes.NullType):
        return func.hex(column)  # bytes, and types SQLAlchemy does not know (GEOMETRY)
    return cast(column, String)


def _partitions(connection: Connection, schema: str | None) -> set[str]:
    if connection.dialect.name != "postgresql":
        return set()
    rows = connection.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relispartition AND n.nspname = coalesce(:schema, current_schema())"
        ),
        {"schema": schema},
    )
    return {r[0] for r in rows}


def _checks(connection: Connection, schema: str | None, name: str) -> tuple[tuple[str, str], ...]:
    if connection.dialect.name == "sqlite":
        return ()  # PRAGMA integrity_check evaluates them (see constraints.py)
    found = inspect(connection).get_check_constraints(name, schema=schema)
    return tuple((str(c.get("name") or "?"), str(c["sqltext"])) for c in found)


def _qualified(schema: str | None, name: str, default: str | None) -> str:
    return name if schema is None or schema == default else f"{schema}.{name}"


def _snapshot_sync(connection: Connection, schemas: Sequence[str | None]) -> Snapshot:
    inspector = inspect(connection)
    dialect = connection.dialect.name
    tables: dict[str, TableSnapshot] = {}
    foreign_keys: list[ForeignKey] = []
    default = inspector.default_schema_name
    for named in schemas:
        schema = None if named == default else named
        skip = _partitions(connection, schema)
        for name in sorted(set(inspector.get_table_names(schema=schema)) - skip):
            key = _qualified(schema, name, default)
            tables[key] = _table_snapshot(connection, name, key, schema)
            for fk in inspector.get_foreign_keys(name, schema=schema):
                referred_schema = fk.get("referred_schema")  # None: the default schema
                foreign_keys.append(
                    ForeignKey(
                        fk.get("name"),
                        key,
                        tuple(fk["constrained_columns"]),
                        _qualified(referred_schema, fk["referred_table"], default),
                        tuple(fk["referred_columns"]),
                    )
                )
    return Snapshot(dialect, tables, foreign_keys)


def table_clause(connection: Connection, name: str, schema: str | None) -> TableClause:
    """The table's columns without its constraints (reflecting a MariaDB CHECK into a ``Table``
    trips over SQLAlchemy's ``dialect_options``; the checker reads constraints itself)."""
    columns = inspect(connection).get_columns(name, schema=schema)
    return table(name, *(column(c["name"], c["type"]) for c in columns), schema=schema)


def _table_snapshot(connection: Connection, name: str, key: str, schema: str | None) -> TableSnapshot:
    dialect = connection.dialect.name
    inspector = inspect(connection)
    reflected = inspector.get_columns(name, schema=schema)
    clause = table_clause(connection, name, schema)
    columns = tuple(c.name for c in clause.columns)
    pk = tuple(inspector.get_pk_constraint(name, schema=schema).get("constrained_columns") or ())
    statement = select(*(_rendered(dialect, c).label(c.name) for c in clause.columns))
    rows: dict[tuple[str | None, ...], Row] = {}
    for index, record in enumerate(connection.execute(statement)):
        values = (None if dialect == "sqlite" and v == "NULL" else v for v in record)  # quote(NULL)
        row: Row = dict(zip(columns, values, strict=True))
        row_key = tuple(row[c] for c in pk) if pk else (*row.values(), str(index))
        rows[row_key] = row
    unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(name, schema=schema)}
    extra: dict[str, Any] = {"include_auto_indexes": True} if dialect == "sqlite" else {}
    for index_info in inspector.get_indexes(name, schema=schema, **extra):
        if index_info.get("unique") and all(index_info["column_names"]):
            unique.add(tuple(c for c in index_info["column_names"] if c))
    if pk:
        unique.add(pk)
    return TableSnapshot(
        key=key,
        schema=schema,
        name=name,
        columns=columns,
        primary_key=pk,
        rows=rows,
        text_columns=frozenset(c.name for c in clause.columns if not isinstance(c.type, _NOT_SEARCHED)),
        not_null=frozenset(c["name"] for c in reflected if not c.get("nullable", True) or c["name"] in pk),
        unique=tuple(sorted(unique)),
        checks=_checks(connection, schema, name),
    )


async def take_snapshot(engine: AsyncEngine, schemas: Sequence[str | None] = (None,)) -> Snapshot:
    """Read every base table of ``schemas`` (None: the connection's default schema)."""
    with warnings.catch_warnings():  # a type SQLAlchemy does not know is read as hex all the same
        warnings.filterwarnings("ignore", "Did not recognize type", exc.SAWarning)
        async with engine.connect() as connection:
            return await connection.run_sync(_snapshot_sync, schemas)
