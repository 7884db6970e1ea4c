"""Build the manifest's pure ``SchemaInfo`` from reflected SQLAlchemy tables (one reflection)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import CheckConstraint, MetaData, Table, UniqueConstraint

from app.engine.reflection import check_infos, column_info, json_check_kind
from app.manifest.names import table_key
from app.manifest.schema import CheckInfo, ColumnInfo, ForeignKeyInfo, SchemaInfo, TableInfo

__all__ = ("column_info_of", "schema_from_metadata", "schema_from_tables", "table_info_of")


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


def _table_info(key: str, table: Table, keys: Mapping[Table, str]) -> TableInfo:
    pk = tuple(c.name for c in table.primary_key.columns)
    checks = _checks(table)
    columns = {
        c.name: json_check_kind(
            column_info(c.name, c.type, nullable=bool(c.nullable), primary_key=c.name in pk), checks
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
    return TableInfo(key, columns, pk, tuple(sorted(u for u in unique if u)), foreign_keys, checks)


def table_info_of(table: Table) -> TableInfo:
    """One reflected table as validation sees it (key, unique column sets, foreign keys)."""
    return _table_info(table.name, table, {})


def schema_from_tables(tables: Mapping[str, Table]) -> SchemaInfo:
    """The ``SchemaInfo`` of reflected tables keyed by manifest table name (``reflect_tables``)."""
    keys = {table: key for key, table in tables.items()}
    return SchemaInfo({key: _table_info(key, t, keys) for key, t in sorted(tables.items())})


def schema_from_metadata(metadata: MetaData, default_schema: str | None = None) -> SchemaInfo:
    """The ``SchemaInfo`` of every table of ``metadata`` (same content as ``reflect_schema``)."""
    return schema_from_tables(
        {table_key(t.schema, t.name, default_schema): t for t in metadata.tables.values()}
    )
