"""Reflect a target database (SQLAlchemy inspector) into the manifest's pure ``SchemaInfo``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Connection, Inspector
from sqlalchemy.ext.asyncio import AsyncConnection

from app.manifest.schema import ColumnInfo, ForeignKeyInfo, SchemaInfo, TableInfo

__all__ = ("affinity_of", "reflect_schema", "reflect_schema_sync")

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


def _table(inspector: Inspector, name: str) -> TableInfo:
    pk = tuple(inspector.get_pk_constraint(name).get("constrained_columns") or ())
    columns: dict[str, ColumnInfo] = {}
    for column in inspector.get_columns(name):
        column_type = column["type"]
        columns[column["name"]] = ColumnInfo(
            name=column["name"],
            type_name=_type_name(column_type),
            affinity=affinity_of(column_type),
            nullable=bool(column.get("nullable", True)) and column["name"] not in pk,
            length=_length(column_type),
            primary_key=column["name"] in pk,
        )
    unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)}
    unique |= {
        tuple(c for c in i["column_names"] if c) for i in inspector.get_indexes(name) if i.get("unique")
    }
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
    return TableInfo(name, columns, pk, tuple(sorted(u for u in unique if u)), foreign_keys)


def reflect_schema_sync(connection: Connection) -> SchemaInfo:
    """Reflect every table of the connection's default schema (run through ``run_sync``)."""
    inspector = inspect(connection)
    names = sorted(inspector.get_table_names())
    return SchemaInfo({name: _table(inspector, name) for name in names})


async def reflect_schema(connection: AsyncConnection) -> SchemaInfo:
    """Reflect the target behind an async connection (PostgreSQL, MariaDB/MySQL, SQLite)."""
    return await connection.run_sync(reflect_schema_sync)
