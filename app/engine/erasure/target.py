"""The target as the planner sees it: the run's one reflection, the subject graph, the options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.erasure.model import ErasureOptions
from app.engine.schema_info import Reflection, reflect
from app.manifest.graph import SubjectGraph, build_graph
from app.manifest.model import Manifest, TableSpec
from app.manifest.names import manifest_schemas
from app.manifest.schema import SchemaInfo

__all__ = (
    "Target",
    "load_target",
)


@dataclass
class Target:
    """One system's target for one run: its reflected tables and schema, the subject graph over
    them, and (once resolved) the subject's key and identity values."""

    manifest: Manifest
    tables: dict[str, Table]
    schema: SchemaInfo
    graph: SubjectGraph
    dialect: str
    dialect_obj: Any
    options: ErasureOptions
    key: tuple[Any, ...] | None = None
    identity_values: dict[str, Any] = field(default_factory=dict)
    """The subject's identity values, read before anything changes (scrubbing, verification)."""

    def spec(self, table: str) -> TableSpec:
        """The manifest's entry of ``table`` (an empty one for tables reached only by paths)."""
        return self.manifest.tables.get(table, TableSpec())


async def load_target(
    conn: AsyncConnection,
    manifest: Manifest,
    options: ErasureOptions,
    reflection: Reflection | None = None,
) -> Target:
    """The target as the planner sees it, from ``reflection`` (the run's one reflection of the
    target, shared with validation and the plan) or reflected here, the same way validation does."""
    if reflection is None:
        reflection = await reflect(conn, manifest_schemas(manifest))
    graph = build_graph(manifest, reflection.schema)
    dialect = conn.dialect.name
    return Target(manifest, reflection.tables, reflection.schema, graph, dialect, conn.dialect, options)
