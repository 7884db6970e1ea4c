"""The subject's rows per table, found by walking the manifest's links over a snapshot in Python
(independent of the SQL the engine builds), and what erasure may change in each of them."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.manifest.graph import SubjectPath, analyse_graph
from app.manifest.model import Manifest, TableSpec
from app.manifest.schema import ColumnInfo, ForeignKeyInfo, SchemaInfo, TableInfo
from tests.integration.erasure_checker.snapshot import Row, Snapshot, TableSnapshot, plain

__all__ = ("Footprint", "RowFate", "footprint", "schema_info")

RowKey = tuple[str | None, ...]


@dataclass
class RowFate:
    """What erasure must do to one row of the subject: delete it, or keep it with only
    ``changeable`` columns allowed to differ (``personal``: the subject's values among them)."""

    deleted: bool
    changeable: set[str] = field(default_factory=set)
    personal: set[str] = field(default_factory=set)
    retained: set[str] = field(default_factory=set)


@dataclass
class Footprint:
    """Per snapshot table key, the subject's rows and their fate."""

    rows: dict[str, dict[RowKey, RowFate]] = field(default_factory=dict)

    def count(self, table: str) -> int:
        """How many rows of ``table`` belong to the subject."""
        return len(self.rows.get(table, {}))


def schema_info(snapshot: Snapshot) -> SchemaInfo:
    """The manifest's ``SchemaInfo`` built from the snapshot (keys as the snapshot names them)."""
    tables: dict[str, TableInfo] = {}
    for key, table in snapshot.tables.items():
        columns = {
            c: ColumnInfo(
                name=c, type_name="text", nullable=c not in table.not_null, primary_key=c in table.primary_key
            )
            for c in table.columns
        }
        fks = tuple(
            ForeignKeyInfo(fk.name, key, fk.columns, fk.referred_table, fk.referred_columns)
            for fk in snapshot.foreign_keys
            if fk.table == key
        )
        tables[key] = TableInfo(key, columns, table.primary_key, table.unique, fks)
    return SchemaInfo(tables)


def _values(snapshot: Snapshot, row: Row, columns: tuple[str, ...]) -> tuple[str | None, ...]:
    return tuple(plain(snapshot.dialect, row[c]) for c in columns)


def _path_rows(
    snapshot: Snapshot,
    path: SubjectPath,
    subject: TableSnapshot,
    key_columns: tuple[str, ...],
    subject_key: tuple[str, ...],
) -> list[Row]:
    selected = [r for r in subject.rows.values() if _values(snapshot, r, key_columns) == subject_key]
    for step in reversed(path.steps):
        wanted = {_values(snapshot, r, step.to_columns) for r in selected}
        wanted.discard(tuple(None for _ in step.to_columns))
        source = snapshot.table(step.from_table)
        selected = [r for r in source.rows.values() if _values(snapshot, r, step.from_columns) in wanted]
    return selected


def _changeable(
    spec: TableSpec, path: SubjectPath, paths: tuple[SubjectPath, ...]
) -> tuple[set[str], set[str]]:
    owned_elsewhere = {c for p in paths for c in p.owned_columns}
    link_columns = {c for c in spec.columns if c in path.owned_columns or c not in owned_elsewhere}
    retained = {c for c in link_columns if spec.columns[c].strategy == "retain"}
    return link_columns - retained, retained


def footprint(snapshot: Snapshot, manifest: Manifest, subject_key: tuple[str, ...]) -> Footprint:
    """The subject's rows in ``snapshot`` (taken before the erasure) and what may change in each.

    Raises:
        AssertionError: the manifest's links do not resolve on this schema.
    """
    graph, issues = analyse_graph(manifest, schema_info(snapshot))
    assert graph is not None, [i.message for i in issues if i.severity == "error"]
    subject = snapshot.table(manifest.subject.table)
    result = Footprint()
    for table_name, paths in graph.paths.items():
        table = snapshot.table(table_name)
        spec = manifest.tables.get(table_name, TableSpec())
        fates = result.rows.setdefault(table.key, {})
        for path in paths:
            changeable, retained = _changeable(spec, path, paths)
            for row in _path_rows(snapshot, path, subject, graph.subject_key, subject_key):
                fate = fates.setdefault(table.key_of(row), RowFate(deleted=spec.strategy == "delete"))
                if fate.deleted:
                    fate.personal |= set(spec.columns)
                    fate.changeable |= set(table.columns)
                    continue
                fate.changeable |= changeable
                fate.personal |= changeable
                fate.retained |= retained
    _outside_references(snapshot, manifest, result)
    return result


def _outside_references(snapshot: Snapshot, manifest: Manifest, result: Footprint) -> None:
    """Rows outside the subject's data that reference deleted rows: ``on_outside_reference``
    says whether they lose the reference (set_null), go (delete) or keep the row (anonymize)."""
    by_key: dict[str, TableSpec] = {}
    for name, spec in manifest.tables.items():
        try:
            by_key[snapshot.table(name).key] = spec
        except KeyError:
            continue
    for fk in snapshot.foreign_keys:
        referred = snapshot.tables[fk.referred_table]
        spec = by_key.get(referred.key)
        fates = result.rows.get(referred.key, {})
        deleted = {k: referred.rows[k] for k, f in fates.items() if f.deleted}
        if spec is None or spec.on_outside_reference == "fail" or not deleted:
            continue
        targets = {_values(snapshot, r, fk.referred_columns): k for k, r in deleted.items()}
        table = snapshot.tables[fk.table]
        own = result.rows.setdefault(table.key, {})
        for key, row in table.rows.items():
            hit = targets.get(_values(snapshot, row, fk.columns))
            if hit is None or (key in own and own[key].deleted):
                continue
            if spec.on_outside_reference == "set_null":
                own.setdefault(key, RowFate(deleted=False)).changeable |= set(fk.columns)
            elif spec.on_outside_reference == "delete":
                own[key] = RowFate(deleted=True)
            else:  # anonymize: the referenced row stays, its personal columns change
                fate = fates[hit]
                fate.deleted = False
                fate.changeable = {c for c in spec.columns if spec.columns[c].strategy != "retain"}
