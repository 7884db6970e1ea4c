"""The subject graph: each managed table's hop chain to the subject, and an FK-safe deletion order.

How the engines use it::

    graph = build_graph(manifest, schema)          # schema: reflected SchemaInfo of the target
    for table in graph.managed_tables:
        for path in graph.paths_for(table):        # one SubjectPath per link
            ...  # rows of `table` belong to the subject when
                 # (steps[0].from_columns) IN (SELECT steps[0].to_columns FROM steps[0].to_table
                 #     WHERE (steps[1].from_columns) IN (SELECT ... FROM subject_table
                 #         WHERE subject key = :key))
    for table in graph.deletion_order:             # children before parents
        ...  # DELETE rows of tables whose strategy is "delete"

``app.engine.paths.subject_filter`` turns a :class:`SubjectPath` into that SQLAlchemy condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.manifest.issues import Issue, raise_for_errors
from app.manifest.links import (
    MAX_CANDIDATES,
    MAX_DERIVED_HOPS,
    LinkResolver,
    Step,
    StepKind,
    SubjectPath,
    candidate_paths,
)
from app.manifest.model import Manifest, TableSpec
from app.manifest.ordering import CycleError, topological_order
from app.manifest.schema import ForeignKeyInfo, SchemaInfo

__all__ = (
    "MAX_CANDIDATES",
    "MAX_DERIVED_HOPS",
    "CycleError",
    "Step",
    "StepKind",
    "SubjectGraph",
    "SubjectPath",
    "analyse_graph",
    "build_graph",
    "candidate_paths",
    "topological_order",
)


@dataclass(frozen=True)
class SubjectGraph:
    """The resolved graph of one manifest against one schema.

    Attributes:
        subject_table: the subject table.
        subject_key: its key columns (the innermost ``WHERE``).
        paths: for every managed table, one :class:`SubjectPath` per link.
        deletion_order: tables whose rows erasure deletes (strategy ``delete``), children before
            parents: deleting in this order never violates a foreign key among them.
        self_references: foreign keys of a managed table into itself, by table; a row-deleting
            engine must clear them (or delete in one statement) since order cannot help.
    """

    subject_table: str
    subject_key: tuple[str, ...]
    paths: dict[str, tuple[SubjectPath, ...]]
    deletion_order: tuple[str, ...]
    self_references: dict[str, tuple[ForeignKeyInfo, ...]] = field(default_factory=dict)

    @property
    def managed_tables(self) -> tuple[str, ...]:
        """Every table with a path (the subject table first)."""
        return tuple(self.paths)

    def paths_for(self, table: str) -> tuple[SubjectPath, ...]:
        """The paths of ``table``.

        Raises:
            KeyError: ``table`` is not managed by the manifest.
        """
        return self.paths[table]


def _deletion_edges(schema: SchemaInfo, paths: dict[str, tuple[SubjectPath, ...]]) -> list[tuple[str, str]]:
    """``(child, parent)`` pairs: declared foreign keys, and logical hops to a unique target."""
    edges = [(fk.table, fk.referred_table) for fk in schema.foreign_keys()]
    for table_paths in paths.values():
        for path in table_paths:
            for step in path.steps:
                if step.kind != "logical":
                    continue
                if schema.tables[step.to_table].is_unique(step.to_columns):
                    edges.append((step.from_table, step.to_table))
                elif schema.tables[step.from_table].is_unique(step.from_columns):
                    edges.append((step.to_table, step.from_table))
    return edges


def analyse_graph(manifest: Manifest, schema: SchemaInfo) -> tuple[SubjectGraph | None, list[Issue]]:
    """Resolve every link and the deletion order, collecting issues instead of raising.

    Returns the graph (None when a link or the order could not be resolved) and the issues
    (kinds ``unknown_table``, ``unknown_column``, ``no_link``, ``ambiguous_link``,
    ``link_not_reaching_subject``, ``cycle``).
    """
    issues: list[Issue] = []
    subject = manifest.subject.table
    if subject not in schema.tables:
        issues.append(
            Issue(
                kind="unknown_table",
                path="subject.table",
                table=subject,
                message=f"subject {schema.missing_table(subject)}",
            )
        )
        return None, issues
    resolver = LinkResolver(manifest, schema, issues)
    for table in manifest.managed_tables():
        if table not in schema.tables:
            issues.append(
                Issue(
                    kind="unknown_table",
                    path=f"tables.{table}",
                    table=table,
                    message=schema.missing_table(table),
                )
            )
            continue
        resolver.resolve(table)
    paths = {t: resolver.paths[t] for t in manifest.managed_tables() if t in resolver.paths}
    deleted = [t for t in paths if manifest.tables.get(t, TableSpec()).strategy == "delete"]
    try:
        order = topological_order(deleted, _deletion_edges(schema, paths))
    except CycleError as exc:
        issues.append(
            Issue(
                kind="cycle",
                path="tables",
                table=exc.tables[0],
                message=f"foreign keys form a cycle among row-deleted tables "
                f"{' -> '.join((*exc.tables, exc.tables[0]))}; no deletion order "
                "exists (anonymize one of them instead)",
            )
        )
        order = []
    if any(i.severity == "error" for i in issues):
        return None, issues
    self_refs = {
        t: tuple(fk for fk in schema.tables[t].foreign_keys if fk.referred_table == t) for t in paths
    }
    graph = SubjectGraph(
        subject,
        manifest.subject.key_columns,
        paths,
        tuple(order),
        {t: fks for t, fks in self_refs.items() if fks},
    )
    return graph, issues


def build_graph(manifest: Manifest, schema: SchemaInfo) -> SubjectGraph:
    """The subject graph of ``manifest`` on ``schema`` (what the erasure and export engines use).

    Raises:
        ManifestInvalid: a link cannot be resolved or deleted tables form a cycle; ``errors``
            names each manifest key path.
    """
    graph, issues = analyse_graph(manifest, schema)
    raise_for_errors(issues)
    assert graph is not None  # noqa: S101 - raise_for_errors raised otherwise
    return graph
