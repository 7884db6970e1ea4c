"""Build the manifest's pure ``SchemaInfo`` from reflected SQLAlchemy tables (one reflection)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import MetaData, Table, UniqueConstraint

from app.engine.reflection import affinity_of
from app.manifest.names import table_key
from app.manifest.schema import ColumnInfo, ForeignKeyInfo, SchemaInfo, TableInfo

__all__ = ("schema_from_metadata", "schema_from_tables")


def _table_info(key: str, table: Table, keys: Mapping[Table, str]) -> TableInfo:
    pk = tuple(c.name for c in table.primary_key.columns)
    columns = {
        c.name: ColumnInfo(
            name=c.name,
            type_name=str(getattr(c.type, "__visit_name__", type(c.type).__name__)).lower(),
            affinity=affinity_of(c.type),
            nullable=bool(c.nullable) and c.name not in pk,
            length=getattr(c.type, "length", None) if affinity_of(c.type) == "text" else None,
            primary_key=c.name in pk,
        )
        for c in table.columns
    }
    unique = {
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
        for fk in sorted(table.foreign_key_constraints, key=lambda f: str(f.name or ""))
    )
    return TableInfo(key, columns, pk, tuple(sorted(u for u in unique if u)), foreign_keys)


def schema_from_tables(tables: Mapping[str, Table]) -> SchemaInfo:
    """The ``SchemaInfo`` of reflected tables keyed by manifest table name (``reflect_tables``)."""
    keys = {table: key for key, table in tables.items()}
    return SchemaInfo({key: _table_info(key, t, keys) for key, t in sorted(tables.items())})


def schema_from_metadata(metadata: MetaData, default_schema: str | None = None) -> SchemaInfo:
    """The ``SchemaInfo`` of every table of ``metadata`` (same content as ``reflect_schema``)."""
    return schema_from_tables(
        {table_key(t.schema, t.name, default_schema): t for t in metadata.tables.values()}
    )
