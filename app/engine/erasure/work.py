"""The statements and checks of each table for given binds (the subject key or placeholders)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.erasure.model import ErasureBlocked, Strategy
from app.engine.erasure.target import Target
from app.engine.erasure_sql import (
    ColumnChange,
    LinkChanges,
    anonymize_statement,
    column_change,
    count_statement,
    delete_statement,
)
from app.engine.subjects import Binds, in_rows, path_condition
from app.engine.surrogates import (
    SurrogateError,
    hash_key_from_secret,
)
from app.manifest.graph import SubjectPath, topological_order
from app.manifest.model import TableSpec
from app.manifest.schema import ForeignKeyInfo

__all__ = (
    "TableWork",
    "all_work",
    "any_of",
    "batchable",
    "count_rows",
    "sizes_of",
)


@dataclass
class TableWork:
    """Statements and checks of one table, for given binds."""

    table: str
    strategy: Strategy
    condition: ColumnElement[bool]
    links: list[LinkChanges]
    path_descriptions: list[str]
    before: list[Any] = field(default_factory=list)
    """Statements run before the main one (outside-reference fixes, MySQL self-ref clears)."""
    main: Any = None
    outside: list[tuple[ForeignKeyInfo, ColumnElement[bool], str]] = field(default_factory=list)
    kept: ColumnElement[bool] | None = None
    """Rows of a deleted table kept (anonymized) because others reference them."""

    @property
    def gone(self) -> ColumnElement[bool]:
        """The rows that must be gone after a delete."""
        return self.condition if self.kept is None else and_(self.condition, not_(self.kept))


def _execution_order(target: Target) -> list[str]:
    """Every managed table, each before the tables its path runs through and before its parents."""
    tables = list(target.graph.paths)
    edges: list[tuple[str, str]] = []
    for table, paths in target.graph.paths.items():
        for path in paths:
            edges += [(table, step.to_table) for step in path.steps]
    deleted = set(target.graph.deletion_order)
    edges += [
        (fk.table, fk.referred_table)
        for fk in target.schema.foreign_keys()
        if fk.table in deleted and fk.referred_table in deleted
    ]
    return topological_order(tables, edges)


def _changes(target: Target, table: str, columns: Sequence[str], binds: Binds) -> tuple[ColumnChange, ...]:
    """The columns erasure writes and their surrogates (none for a table whose rows are deleted,
    unless rows referenced from outside are kept and anonymized instead)."""
    spec = target.spec(table)
    if spec.strategy == "delete" and spec.on_outside_reference != "anonymize":
        return ()
    sql_table = target.tables[table]
    info = target.schema.tables[table]
    hash_key = hash_key_from_secret(target.options.secret) if target.options.secret else None
    changes: list[ColumnChange] = []
    for name in columns:
        column_spec = spec.columns[name]
        if column_spec.strategy == "retain":
            continue
        try:
            change = column_change(
                sql_table,
                info,
                name,
                column_spec,
                target.dialect,
                hash_key=hash_key,
                secret_bind=binds.secret,
            )
        except SurrogateError as exc:
            raise ErasureBlocked(f"system '{target.manifest.system}': {exc}") from exc
        changes.append(change)
    return tuple(changes)


def _link_columns(spec: TableSpec, path: SubjectPath, all_paths: Sequence[SubjectPath]) -> list[str]:
    """Columns a link changes: those it owns plus those no link owns."""
    return [c for c in spec.columns if c in path.owned_columns or _unowned(c, all_paths)]


def _unowned(column: str, paths: Sequence[SubjectPath]) -> bool:
    return all(column not in p.owned_columns for p in paths)


def _table_work(target: Target, table: str, binds: Binds) -> TableWork:
    spec = target.spec(table)
    sql_table = target.tables[table]
    paths = target.graph.paths_for(table)
    key = target.graph.subject_key
    conditions = [path_condition(p, target.tables, key, binds, dialect=target.dialect) for p in paths]
    condition = conditions[0] if len(conditions) == 1 else any_of(conditions)
    strategy: Strategy = spec.strategy
    links = [
        LinkChanges(c, _changes(target, table, _link_columns(spec, p, paths), binds))
        for p, c in zip(paths, conditions, strict=True)
    ]
    work = TableWork(table, strategy, condition, links, [p.describe() for p in paths])
    if strategy == "delete":
        work.main = delete_statement(sql_table, condition)
    else:
        work.main = anonymize_statement(sql_table, links)
    return work


def any_of(conditions: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    return conditions[0] if len(conditions) == 1 else or_(*conditions)


def _subject_rows(target: Target, table: str, binds: Binds) -> Select[Any] | None:
    """The key columns of the subject's rows of ``table`` that erasure deletes (None: keeps)."""
    if target.spec(table).strategy != "delete" or table not in target.graph.paths:
        return None
    alias = target.tables[table].alias()
    conditions = [
        path_condition(
            p, target.tables, target.graph.subject_key, binds, target=alias, dialect=target.dialect
        )
        for p in target.graph.paths_for(table)
    ]
    info = target.schema.tables[table]
    return select(*(alias.c[c] for c in info.primary_key)).where(any_of(conditions))


def _outside_condition(
    target: Target, fk: ForeignKeyInfo, binds: Binds, referencing: Any = None
) -> ColumnElement[bool]:
    """Rows of ``fk.table`` (or of ``referencing``, an alias of it) referencing the subject's
    deleted rows of ``fk.referred_table``, excluding rows erasure deletes anyway (the subject's
    own rows of a deleted table)."""
    referred = target.tables[fk.referred_table].alias()
    referencing = target.tables[fk.table] if referencing is None else referencing
    paths = target.graph.paths_for(fk.referred_table)
    chosen_condition = any_of(
        [
            path_condition(
                p, target.tables, target.graph.subject_key, binds, target=referred, dialect=target.dialect
            )
            for p in paths
        ]
    )
    chosen = select(*(referred.c[c] for c in fk.referred_columns)).where(chosen_condition)
    condition = in_rows(referencing, fk.columns, chosen, dialect=target.dialect)
    own = _subject_rows(target, fk.table, binds)
    if own is not None:
        pk = target.schema.tables[fk.table].primary_key
        condition = and_(condition, not_(in_rows(referencing, pk, own, dialect=target.dialect)))
    return condition


def _outside_work(target: Target, work: TableWork, binds: Binds) -> None:
    """Attach outside-reference checks and fixes to a deleted table's work."""
    if work.strategy != "delete":
        return
    action = target.spec(work.table).on_outside_reference
    for fk in target.schema.references_to(work.table):
        condition = _outside_condition(target, fk, binds)
        work.outside.append((fk, condition, action))
        referencing = target.tables[fk.table]
        if action == "set_null":
            work.before.append(update(referencing).where(condition).values(dict.fromkeys(fk.columns)))
        elif action == "delete":
            work.before.append(delete_statement(referencing, condition))
    if action == "anonymize":
        _keep_referenced(target, work, binds)
    work.before += _self_reference_clears(target, work)


def _keep_referenced(target: Target, work: TableWork, binds: Binds) -> None:
    """``on_outside_reference: anonymize``: rows referenced from outside are anonymized in place,
    the subject's other rows are deleted."""
    table = target.tables[work.table]
    referenced = []
    for fk in target.schema.references_to(work.table):
        alias = target.tables[fk.table].alias()
        rows = select(*(alias.c[c] for c in fk.columns)).where(
            _outside_condition(target, fk, binds, referencing=alias)
        )
        referenced.append(in_rows(table, fk.referred_columns, rows, dialect=target.dialect))
    if not referenced:
        return
    work.kept = any_of(referenced)
    values = {c.column: c.value for link in work.links for c in link.changes}
    if values:
        work.before.append(update(table).where(and_(work.condition, work.kept)).values(values))
    work.main = delete_statement(table, and_(work.condition, not_(work.kept)))


def _self_reference_clears(target: Target, work: TableWork) -> list[Any]:
    """Clear the self references of the rows about to be deleted (nullable ones): InnoDB checks
    foreign keys row by row, and a keyset batch may hold a parent without its children."""
    sql_table = target.tables[work.table]
    columns = target.schema.tables[work.table].columns
    return [
        update(sql_table).where(work.condition).values(dict.fromkeys(fk.columns))
        for fk in target.graph.self_references.get(work.table, ())
        if all(columns[c].nullable for c in fk.columns)
    ]


def all_work(target: Target, binds: Binds) -> list[TableWork]:
    works = []
    for table in _execution_order(target):
        work = _table_work(target, table, binds)
        _outside_work(target, work, binds)
        works.append(work)
    return works


async def count_rows(conn: AsyncConnection, table: Table, condition: ColumnElement[bool]) -> int:
    return int((await conn.execute(count_statement(table, condition))).scalar_one())


def batchable(target: Target, table: str) -> bool:
    """Keyset batches need a primary key (one column or several) and no NOT NULL self reference."""
    info = target.schema.tables[table]
    self_refs = target.graph.self_references.get(table, ())
    nullable = all(info.columns[c].nullable for fk in self_refs for c in fk.columns)
    return bool(info.primary_key) and nullable


async def sizes_of(conn: AsyncConnection, target: Target, works: Sequence[TableWork]) -> dict[str, int]:
    """The subject's rows per table, in one round trip."""
    counts = [count_statement(target.tables[w.table], w.condition).scalar_subquery() for w in works]
    row = (await conn.execute(select(*counts))).one()
    return {w.table: int(n) for w, n in zip(works, row, strict=True)}
