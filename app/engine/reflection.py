"""Reflect a target database (SQLAlchemy inspector) into the manifest's pure ``SchemaInfo``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Connection, Inspector
from sqlalchemy.ext.asyncio import AsyncConnection

from app.manifest.schema import CheckInfo, ColumnInfo, ForeignKeyInfo, SchemaInfo, TableInfo

__all__ = (
    "affinity_of",
    "check_infos",
    "column_info",
    "json_check_kind",
    "reflect_schema",
    "reflect_schema_sync",
)

_AFFINITIES: tuple[tuple[type[Any], str], ...] = (
    (sqltypes.Boolean, "boolean"),
    (sqltypes.Integer, "integer"),
    (sqltypes.Numeric, "number"),
    (sqltypes.DateTime, "datetime"),
    (sqltypes.Date, "date"),
    (sqltypes.Time, "other"),
    (sqltypes.Interval, "other"),
    (sqltypes.Enum, "text"),
    (sqltypes.String, "text"),
    (sqltypes.LargeBinary, "binary"),
    (sqltypes._Binary, "binary"),  # BINARY/VARBINARY share only this base
)


def affinity_of(column_type: Any) -> str:
    """The manifest's coarse type of a reflected SQLAlchemy type (see ``ColumnInfo``)."""
    for base, affinity in _AFFINITIES:
        if isinstance(column_type, base):
            return affinity
    return "other"


def _type_name(column_type: Any) -> str:
    name = getattr(column_type, "__visit_name__", None) or type(column_type).__name__
    return str(name).lower()


def _length(column_type: Any) -> int | None:
    if isinstance(column_type, sqltypes.String) and not isinstance(column_type, sqltypes.Enum):
        return column_type.length
    return None


def column_info(name: str, column_type: Any, *, nullable: bool, primary_key: bool) -> ColumnInfo:
    """One reflected column as the manifest sees it (both reflection paths build it here).

    MariaDB/MySQL ``BOOLEAN`` is ``TINYINT(1)``: it reads as a boolean."""
    enums = column_type.enums if isinstance(column_type, sqltypes.Enum) else ()
    boolean = getattr(column_type, "display_width", None) == 1 and _type_name(column_type) == "tinyint"
    return ColumnInfo(
        name=name,
        type_name="boolean" if boolean else _type_name(column_type),
        affinity="boolean" if boolean else affinity_of(column_type),
        nullable=nullable and not primary_key,
        length=_length(column_type),
        primary_key=primary_key,
        timezone=bool(getattr(column_type, "timezone", False)),
        enum_values=tuple(str(v) for v in enums),
    )


def check_infos(checks: Any) -> tuple[CheckInfo, ...]:
    """CHECK constraints as ``(name, sqltext)`` pairs; MariaDB's own ``json_valid`` checks of JSON
    columns stay (they are real constraints on what may be written)."""
    found = []
    for check in checks:
        name, sqltext = (check.get("name"), check.get("sqltext")) if isinstance(check, dict) else check
        if sqltext is not None:
            found.append(CheckInfo(str(name) if name else None, str(sqltext)))
    return tuple(sorted(found, key=lambda c: (c.name or "", c.sqltext)))


_MARIADB_CHECKS = text(
    "SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
    "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = :table"
)


def _check_constraints(inspector: Inspector, name: str) -> list[Any]:
    """CHECK constraints of a table; on MariaDB from ``information_schema``, which also lists the
    column-level ones (``json_valid`` of JSON columns) SQLAlchemy's parser misses."""
    if getattr(inspector.dialect, "is_mariadb", False) and isinstance(inspector.bind, Connection):
        rows = inspector.bind.execute(_MARIADB_CHECKS, {"table": name}).all()
        return [{"name": row[0], "sqltext": row[1]} for row in rows]
    return list(inspector.get_check_constraints(name))


def _table(inspector: Inspector, name: str) -> TableInfo:
    pk = tuple(inspector.get_pk_constraint(name).get("constrained_columns") or ())
    checks = check_infos(_check_constraints(inspector, name))
    columns: dict[str, ColumnInfo] = {}
    for column in inspector.get_columns(name):
        columns[column["name"]] = json_check_kind(
            column_info(
                column["name"],
                column["type"],
                nullable=bool(column.get("nullable", True)),
                primary_key=column["name"] in pk,
            ),
            checks,
        )
    unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)}
    # SQLite reports inline UNIQUE column constraints only as automatic indexes
    extra: dict[str, Any] = {"include_auto_indexes": True} if inspector.dialect.name == "sqlite" else {}
    indexes = inspector.get_indexes(name, **extra)
    unique |= {tuple(c for c in i["column_names"] if c) for i in indexes if i.get("unique")}
    foreign_keys = tuple(
        ForeignKeyInfo(
            name=fk.get("name") or None,
            table=name,
            columns=tuple(fk["constrained_columns"]),
            referred_table=fk["referred_table"],
            referred_columns=tuple(fk["referred_columns"]),
        )
        for fk in inspector.get_foreign_keys(name)
    )
    return TableInfo(name, columns, pk, tuple(sorted(u for u in unique if u)), foreign_keys, checks)


def json_check_kind(column: ColumnInfo, checks: tuple[CheckInfo, ...]) -> ColumnInfo:
    """MariaDB stores JSON as LONGTEXT guarded by ``CHECK (json_valid(col))``: a JSON column."""
    if column.affinity != "text" or column.kind != "text":
        return column
    for check in checks:
        text = check.sqltext.replace("`", "").replace(" ", "").lower()
        if check.name == column.name and text == f"json_valid({column.name.lower()})":
            return replace(column, type_name="json", length=None)
    return column


def reflect_schema_sync(connection: Connection) -> SchemaInfo:
    """Reflect every table of the connection's default schema (run through ``run_sync``)."""
    inspector = inspect(connection)
    names = sorted(inspector.get_table_names())
    return SchemaInfo({name: _table(inspector, name) for name in names})


async def reflect_schema(connection: AsyncConnection) -> SchemaInfo:
    """Reflect the target behind an async connection (PostgreSQL, MariaDB/MySQL, SQLite)."""
    return await connection.run_sync(reflect_schema_sync)
