"""Reflect a target's managed tables and find the subject's key rows by the request's identities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, MetaData, Table, UniqueConstraint, and_, false, or_, select
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.paths import subject_filter
from app.lib.errors import ValidationFailed
from app.manifest.graph import SubjectGraph, build_graph
from app.manifest.model import Manifest
from app.manifest.schema import ColumnInfo, ForeignKeyInfo, SchemaInfo, TableInfo

__all__ = ("ReflectedTarget", "coerce_identity", "reflect_target", "subject_condition", "subject_keys")


@dataclass(frozen=True)
class ReflectedTarget:
    """The managed tables of a target as SQLAlchemy tables, and the subject graph over them."""

    tables: dict[str, Table]
    graph: SubjectGraph


def _table_info(table: Table) -> TableInfo:
    pk = tuple(c.name for c in table.primary_key.columns)
    columns = {
        c.name: ColumnInfo(
            name=c.name,
            type_name=str(c.type.__visit_name__).lower(),
            nullable=c.nullable is True,
            primary_key=c.primary_key,
        )
        for c in table.columns
    }
    unique = tuple(
        tuple(c.name for c in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    ) + tuple(tuple(c.name for c in index.columns) for index in table.indexes if index.unique)
    foreign_keys = tuple(
        ForeignKeyInfo(
            name=fk.name if isinstance(fk.name, str) else None,
            table=table.name,
            columns=tuple(e.parent.name for e in fk.elements),
            referred_table=fk.elements[0].column.table.name,
            referred_columns=tuple(e.column.name for e in fk.elements),
        )
        for fk in table.foreign_key_constraints
    )
    return TableInfo(table.name, columns, pk, unique, foreign_keys)


def _reflect(connection: Connection, names: Sequence[str]) -> dict[str, Table]:
    metadata = MetaData()
    existing = set(connection.dialect.get_table_names(connection))
    metadata.reflect(connection, only=[n for n in names if n in existing], resolve_fks=True)
    return {t.name: t for t in metadata.tables.values()}


async def reflect_target(connection: AsyncConnection, manifest: Manifest) -> ReflectedTarget:
    """Reflect the tables the manifest covers (and those they reference) and build the graph.

    Raises:
        ManifestInvalid: the manifest does not fit the live schema (unknown table, broken link).
    """
    tables = await connection.run_sync(_reflect, manifest.managed_tables())
    schema = SchemaInfo({name: _table_info(table) for name, table in tables.items()})
    return ReflectedTarget(tables=tables, graph=build_graph(manifest, schema))


def coerce_identity(column: Any, value: str) -> Any:
    """Convert an identity given as text to the column's type (``"42"`` for an integer key).

    Returns None when the text cannot be such a value: then no subject matches.
    """
    column_type = column.type
    if isinstance(column_type, sqltypes.Integer):
        try:
            return int(value)
        except ValueError:
            return None
    return value


def _identity_condition(
    manifest: Manifest, table: Table, identities: Mapping[str, str], tenant: str | None
) -> ColumnElement[bool] | None:
    conditions: list[ColumnElement[bool]] = []
    for name, value in sorted(identities.items()):
        if name not in manifest.subject.identities:
            continue
        identity = manifest.subject.identity(name)
        coerced = coerce_identity(table.c[identity.column], value)
        if coerced is None:
            return false()
        conditions.append(table.c[identity.column] == coerced)
        if identity.tenant_column is not None:
            if tenant is None:
                return false()
            conditions.append(
                table.c[identity.tenant_column] == coerce_identity(table.c[identity.tenant_column], tenant)
            )
    return and_(*conditions) if conditions else None


async def subject_keys(
    connection: AsyncConnection,
    target: ReflectedTarget,
    manifest: Manifest,
    identities: Mapping[str, str],
    tenant: str | None = None,
) -> list[tuple[Any, ...]]:
    """The keys of the subject rows every given identity (that this system declares) matches.

    An empty list means the subject is unknown in this system, which is a valid answer.

    Raises:
        ValidationFailed: the identities match several subjects (an identity on a column that
            is not unique, marked ``ambiguous: refuse``): nobody's data is exported or changed.
    """
    table = target.tables[manifest.subject.table]
    condition = _identity_condition(manifest, table, identities, tenant)
    if condition is None:
        return []
    key_columns = [table.c[c] for c in manifest.subject.key_columns]
    result = await connection.execute(select(*key_columns).where(condition).order_by(*key_columns).limit(2))
    keys = [tuple(row) for row in result]
    if len(keys) > 1:
        raise ValidationFailed(
            f"the identities match several subjects in system '{manifest.system}'",
            [{"field": "identities", "message": "ambiguous: give a more specific identity"}],
        )
    return keys


def subject_condition(
    target: ReflectedTarget, table: str, keys: Sequence[tuple[Any, ...]]
) -> ColumnElement[bool]:
    """Rows of ``table`` that belong to any of the subject ``keys`` through any of its links."""
    graph = target.graph
    return or_(
        *(
            subject_filter(path, target.tables, graph.subject_key, key)
            for key in keys
            for path in graph.paths_for(table)
        )
    )
