"""Reflect a target's managed tables and find the subject's key rows by the request's identities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, false, or_, select
from sqlalchemy import types as sqltypes
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.paths import subject_filter
from app.engine.reflection import reflect_tables
from app.engine.schema_info import schema_from_tables
from app.manifest.graph import SubjectGraph, build_graph
from app.manifest.model import Manifest
from app.manifest.names import manifest_schemas

__all__ = ("ReflectedTarget", "coerce_identity", "reflect_target", "subject_condition", "subject_keys")


@dataclass(frozen=True)
class ReflectedTarget:
    """The managed tables of a target as SQLAlchemy tables, and the subject graph over them."""

    tables: dict[str, Table]
    graph: SubjectGraph


async def reflect_target(connection: AsyncConnection, manifest: Manifest) -> ReflectedTarget:
    """Reflect the tables the manifest covers (and those they reference) and build the graph.

    Raises:
        ManifestInvalid: the manifest does not fit the live schema (unknown table, broken link).
    """
    tables, _ = await connection.run_sync(
        reflect_tables, manifest_schemas(manifest), manifest.managed_tables()
    )
    schema = schema_from_tables(tables)
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
    """
    table = target.tables[manifest.subject.table]
    condition = _identity_condition(manifest, table, identities, tenant)
    if condition is None:
        return []
    key_columns = [table.c[c] for c in manifest.subject.key_columns]
    result = await connection.execute(select(*key_columns).where(condition).order_by(*key_columns))
    return [tuple(row) for row in result]


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
