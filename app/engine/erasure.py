"""Erasure (Art. 17): a read-only plan per system, then set-based execution with verification.

How the pieces fit::

    async with engine.connect() as conn:
        plan = await plan_erasure(conn, manifest, identities, options)   # reads only
    outcome = await execute_erasure(engine, manifest, identities, options,
                                    cursor=saved, save_cursor=fenced_write)

The plan lists, per table, the strategy (delete rows / anonymize columns / retain with its legal
basis), the rows affected and the SQL that will run (the subject key shown as a placeholder).
Execution runs one statement per table, children before parents, in one transaction per system;
a table with more rows than ``batch_threshold`` is processed in keyset batches, each its own
transaction, the cursor saved after each so a crash resumes at the next batch. Verification runs
in the same transaction as the statement it checks. A foreign key from outside the subject's data
into a row erasure would delete stops the system before anything changes, unless the manifest's
``on_outside_reference`` says how to treat it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    case,
    func,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.engine.erasure_sql import (
    ColumnChange,
    LinkChanges,
    anonymize_statement,
    count_statement,
    delete_statement,
    display_sql,
    keyset_bounds,
    value_differs,
)
from app.engine.errors import TargetBlocks
from app.engine.integrity import IntegrityDetail, constraint_refusal, integrity_detail
from app.engine.reflection import reflect_schema, reflect_tables
from app.engine.runs import RequestFailed, RequestOutcome, RequestRun, SystemOutcome, SystemRun
from app.engine.schema_info import schema_from_tables
from app.engine.scrub import ScrubPlan, identity_values, mentions_left, plan_scrubs, run_scrubs
from app.engine.scrub import prepare_connection as prepare_scrub_connection
from app.engine.subjects import Binds, in_rows, path_condition, resolve_subject, subject_key_reference
from app.engine.surrogates import (
    SurrogateContext,
    SurrogateError,
    hash_key_from_secret,
    install_sqlite_functions,
    resolved_surrogate,
    surrogate_expression,
    surrogate_label,
)
from app.engine.verification import CheckedTable, independent_rows_left
from app.manifest.graph import SubjectGraph, SubjectPath, build_graph, topological_order
from app.manifest.model import Manifest, Surrogate, TableSpec
from app.manifest.names import manifest_schemas
from app.manifest.schema import ForeignKeyInfo, SchemaInfo

__all__ = (
    "ErasureBlocked",
    "ErasureOptions",
    "ErasureOutcome",
    "OutsideReference",
    "SaveCursor",
    "SystemPlan",
    "TablePlan",
    "execute_erasure",
    "plan_document",
    "plan_erasure",
    "run_erasure",
)

Strategy = Literal["delete", "anonymize", "retain"]
SaveCursor = Callable[[dict[str, Any]], Awaitable[None]]
"""Persists the batch cursor (the caller fences the write with its attempt number)."""


class ErasureBlocked(TargetBlocks):
    """A system cannot be erased as the manifest stands (an outside reference, a surrogate that
    cannot fit); nothing was changed in that system."""

    slug = "erasure-blocked"
    title = "Erasure blocked"


@dataclass(frozen=True)
class ErasureOptions:
    """Knobs of one erasure run (from settings, overridable in tests and benchmarks)."""

    secret: str | None = None
    """Service secret keying the ``hash`` surrogate (the audit key)."""
    batch_threshold: int = 50_000
    batch_size: int = 5_000
    tenant: str | None = None
    batch_delay_seconds: float = 0.0
    """Pause after each committed batch (crash tests only)."""


@dataclass(frozen=True)
class OutsideReference:
    """A foreign key from rows erasure keeps into rows erasure deletes."""

    constraint: str
    referencing_table: str
    referencing_columns: tuple[str, ...]
    referenced_table: str
    rows: int
    action: str
    """``fail`` (blocks the system), ``set_null``, ``delete`` or ``anonymize``."""


@dataclass
class TablePlan:
    """What erasure does to one table."""

    table: str
    strategy: Strategy
    rows: int
    links: list[str]
    legal_basis: str | None = None
    retention: str | None = None
    changed_columns: dict[str, str] = field(default_factory=dict)
    """column -> ``null`` or the surrogate name (anonymize/retain tables)."""
    retained_columns: list[str] = field(default_factory=list)
    sql: list[str] = field(default_factory=list)
    batched: bool = False
    outside_references: list[OutsideReference] = field(default_factory=list)


@dataclass
class SystemPlan:
    """The plan of one system; ``blocked`` explains why execution would fail (or None)."""

    system: str
    found: bool
    tables: list[TablePlan] = field(default_factory=list)
    blocked: str | None = None
    scrubs: list[ScrubPlan] = field(default_factory=list)
    """Columns whose rows (anyone's) are scrubbed of the subject's identity values."""

    @property
    def rows(self) -> int:
        """Rows affected in total."""
        return sum(t.rows for t in self.tables)


@dataclass
class ErasureOutcome:
    """What execution did in one system: counts per table and the verification result."""

    system: str
    found: bool
    subject_key: tuple[Any, ...] | None = None
    deleted: dict[str, int] = field(default_factory=dict)
    anonymized: dict[str, int] = field(default_factory=dict)
    outside_references: dict[str, int] = field(default_factory=dict)
    verified_rows_left: dict[str, int] = field(default_factory=dict)
    verified_values_left: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    scrubbed: dict[str, int] = field(default_factory=dict)
    """Rows whose mentions of the subject were replaced, per ``table.column``."""
    mentions_left: dict[str, int] = field(default_factory=dict)
    """Rows still mentioning the subject after scrubbing, per ``table.column``."""
    independent_left: dict[str, int] = field(default_factory=dict)
    """Rows reflected evidence still ties to the subject, per table (independent verification)."""

    @property
    def verified(self) -> bool:
        """True when no subject row, no original value and no mention was found after execution,
        along the manifest's paths and by the independent check."""
        return not any(
            any(counts.values())
            for counts in (
                self.verified_rows_left,
                self.verified_values_left,
                self.mentions_left,
                self.independent_left,
            )
        )

    def audit_payload(self) -> dict[str, Any]:
        """Counts, table and column names only (safe for the audit log)."""
        return {
            "found": self.found,
            "deleted": dict(self.deleted),
            "anonymized": dict(self.anonymized),
            "outside_references": dict(self.outside_references),
            "scrubbed": dict(self.scrubbed),
            "verification": {
                "rows_left": sum(self.verified_rows_left.values()),
                "values_left": sum(self.verified_values_left.values()),
                "mentions_left": sum(self.mentions_left.values()),
                "independent_rows_left": sum(self.independent_left.values()),
                "verified": self.verified,
            },
            "batches": self.batches,
        }


# --- the target as the planner sees it -----------------------------------------------------


@dataclass
class _Target:
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
        return self.manifest.tables.get(table, TableSpec())


async def _load_target(conn: AsyncConnection, manifest: Manifest, options: ErasureOptions) -> _Target:
    named = manifest_schemas(manifest)
    tables, _ = await conn.run_sync(reflect_tables, named)
    # SQLite shows inline UNIQUE constraints, MariaDB column-level CHECKs (its JSON columns) only
    # to the inspector: reflect them the way validation does, so both see the same constraints
    inspected = conn.dialect.name == "sqlite" or getattr(conn.dialect, "is_mariadb", False)
    schema = await reflect_schema(conn, named) if inspected else schema_from_tables(tables)
    graph = build_graph(manifest, schema)
    dialect = conn.dialect.name
    return _Target(manifest, tables, schema, graph, dialect, conn.dialect, options)


# --- building the per-table work -----------------------------------------------------------


@dataclass
class _TableWork:
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


def _execution_order(target: _Target) -> list[str]:
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


def _changes(target: _Target, table: str, columns: Sequence[str], binds: Binds) -> tuple[ColumnChange, ...]:
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
        ctx = SurrogateContext(
            sql_table,
            name,
            tuple(info.primary_key),
            target.dialect,
            unique=info.column_is_unique(name),
            hash_key=hash_key,
            secret_bind=binds.secret,
            table_info=info,
        )
        wanted = Surrogate(kind="null") if column_spec.strategy == "delete" else column_spec.surrogate_spec
        try:
            surrogate = resolved_surrogate(ctx, wanted)
            value = surrogate_expression(ctx, surrogate)
        except SurrogateError as exc:
            raise ErasureBlocked(f"system '{target.manifest.system}': {exc}") from exc
        changes.append(ColumnChange(name, value, surrogate_label(surrogate)))
    return tuple(changes)


def _link_columns(spec: TableSpec, path: SubjectPath, all_paths: Sequence[SubjectPath]) -> list[str]:
    """Columns a link changes: those it owns plus those no link owns."""
    return [c for c in spec.columns if c in path.owned_columns or _unowned(c, all_paths)]


def _unowned(column: str, paths: Sequence[SubjectPath]) -> bool:
    return all(column not in p.owned_columns for p in paths)


def _table_work(target: _Target, table: str, binds: Binds) -> _TableWork:
    spec = target.spec(table)
    sql_table = target.tables[table]
    paths = target.graph.paths_for(table)
    key = target.graph.subject_key
    conditions = [path_condition(p, target.tables, key, binds, dialect=target.dialect) for p in paths]
    condition = conditions[0] if len(conditions) == 1 else _or(conditions)
    strategy: Strategy = spec.strategy
    links = [
        LinkChanges(c, _changes(target, table, _link_columns(spec, p, paths), binds))
        for p, c in zip(paths, conditions, strict=True)
    ]
    work = _TableWork(table, strategy, condition, links, [p.describe() for p in paths])
    if strategy == "delete":
        work.main = delete_statement(sql_table, condition)
    else:
        work.main = anonymize_statement(sql_table, links)
    return work


def _or(conditions: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    return conditions[0] if len(conditions) == 1 else or_(*conditions)


def _subject_rows(target: _Target, table: str, binds: Binds) -> Select[Any] | None:
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
    return select(*(alias.c[c] for c in info.primary_key)).where(_or(conditions))


def _outside_condition(
    target: _Target, fk: ForeignKeyInfo, binds: Binds, referencing: Any = None
) -> ColumnElement[bool]:
    """Rows of ``fk.table`` (or of ``referencing``, an alias of it) referencing the subject's
    deleted rows of ``fk.referred_table``, excluding rows erasure deletes anyway (the subject's
    own rows of a deleted table)."""
    referred = target.tables[fk.referred_table].alias()
    referencing = target.tables[fk.table] if referencing is None else referencing
    paths = target.graph.paths_for(fk.referred_table)
    chosen_condition = _or(
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


def _outside_work(target: _Target, work: _TableWork, binds: Binds) -> None:
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


def _keep_referenced(target: _Target, work: _TableWork, binds: Binds) -> None:
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
    work.kept = _or(referenced)
    values = {c.column: c.value for link in work.links for c in link.changes}
    if values:
        work.before.append(update(table).where(and_(work.condition, work.kept)).values(values))
    work.main = delete_statement(table, and_(work.condition, not_(work.kept)))


def _self_reference_clears(target: _Target, work: _TableWork) -> list[Any]:
    """Clear the self references of the rows about to be deleted (nullable ones): InnoDB checks
    foreign keys row by row, and a keyset batch may hold a parent without its children."""
    sql_table = target.tables[work.table]
    columns = target.schema.tables[work.table].columns
    return [
        update(sql_table).where(work.condition).values(dict.fromkeys(fk.columns))
        for fk in target.graph.self_references.get(work.table, ())
        if all(columns[c].nullable for c in fk.columns)
    ]


def _all_work(target: _Target, binds: Binds) -> list[_TableWork]:
    works = []
    for table in _execution_order(target):
        work = _table_work(target, table, binds)
        _outside_work(target, work, binds)
        works.append(work)
    return works


# --- the plan ------------------------------------------------------------------------------


async def plan_erasure(
    conn: AsyncConnection,
    manifest: Manifest,
    identities: Mapping[str, str],
    options: ErasureOptions,
) -> SystemPlan:
    """The erasure plan of one subject in one system; reads the target, changes nothing.

    Raises:
        ManifestInvalid: the manifest does not fit the target's schema.
        ErasureBlocked: a surrogate cannot honour a column's constraints.
    """
    target = await _load_target(conn, manifest, options)
    subject_table = target.tables[manifest.subject.table]
    key = await resolve_subject(conn, manifest, subject_table, identities, options.tenant)
    plan = SystemPlan(manifest.system, found=key is not None)
    values = await identity_values(conn, subject_table, manifest, key) if key is not None else None
    plan.scrubs = await plan_scrubs(conn, target.tables, manifest, values, target.dialect_obj)
    display = _all_work(target, Binds(None))
    executable = _all_work(target, Binds(key)) if key is not None else None
    for index, shown in enumerate(display):
        table_plan = _table_plan(target, shown)
        if executable is not None:
            work = executable[index]
            table_plan.rows = await _count(conn, target.tables[work.table], work.condition)
            table_plan.batched = table_plan.rows > options.batch_threshold and _batchable(target, work.table)
            table_plan.outside_references = await _outside_counts(conn, target, work)
        plan.tables.append(table_plan)
    plan.blocked = _blocking(plan)
    return plan


def _table_plan(target: _Target, work: _TableWork) -> TablePlan:
    spec = target.spec(work.table)
    changed: dict[str, str] = {}
    for link in work.links:
        changed.update({c.column: c.kind for c in link.changes})
    if work.strategy == "delete":
        changed = {}
    retained = [
        c
        for c, s in spec.columns.items()
        if s.strategy == "retain" or (work.strategy == "retain" and c not in changed)
    ]
    retention = spec.retention
    statements = [*work.before, work.main] if work.main is not None else list(work.before)
    return TablePlan(
        table=work.table,
        strategy=work.strategy,
        rows=0,
        links=work.path_descriptions,
        legal_basis=(retention.legal_basis if retention else None) or spec.legal_basis,
        retention=str(retention.duration) if retention else None,
        changed_columns=changed,
        retained_columns=retained if work.strategy != "delete" else [],
        sql=[display_sql(s, target.dialect_obj) for s in statements],
    )


def _blocking(plan: SystemPlan) -> str | None:
    for table in plan.tables:
        for ref in table.outside_references:
            if ref.action == "fail" and ref.rows:
                return (
                    f"foreign key {ref.constraint} from table '{ref.referencing_table}' references "
                    f"{ref.rows} row(s) of '{ref.referenced_table}' that erasure deletes; set "
                    f"on_outside_reference of '{ref.referenced_table}' (set_null, delete, "
                    "anonymize) or manage the referencing table"
                )
    return None


async def _count(conn: AsyncConnection, table: Table, condition: ColumnElement[bool]) -> int:
    return int((await conn.execute(count_statement(table, condition))).scalar_one())


async def _outside_counts(conn: AsyncConnection, target: _Target, work: _TableWork) -> list[OutsideReference]:
    found = []
    for fk, condition, action in work.outside:
        rows = await _count(conn, target.tables[fk.table], condition)
        if rows:
            found.append(OutsideReference(fk.label, fk.table, fk.columns, fk.referred_table, rows, action))
    return found


def _batchable(target: _Target, table: str) -> bool:
    """Keyset batches need a single-column key and no NOT NULL self reference."""
    info = target.schema.tables[table]
    self_refs = target.graph.self_references.get(table, ())
    nullable = all(info.columns[c].nullable for fk in self_refs for c in fk.columns)
    return len(info.primary_key) == 1 and nullable


# --- execution -----------------------------------------------------------------------------


async def _prepare_connection(conn: AsyncConnection) -> None:
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("PRAGMA secure_delete=ON")
        await conn.run_sync(lambda sync: install_sqlite_functions(sync.connection.dbapi_connection))
        await prepare_scrub_connection(conn)


def _changed_columns(work: _TableWork) -> list[tuple[ColumnChange, ColumnElement[bool] | None]]:
    """Each changed column with the condition of the rows it changes on (None: every row)."""
    owners: dict[str, tuple[ColumnChange, list[ColumnElement[bool]]]] = {}
    for link in work.links:
        for change in link.changes:
            owners.setdefault(change.column, (change, []))[1].append(link.condition)
    single = len(work.links) == 1
    return [(change, None if single else _or(conds)) for change, conds in owners.values()]


def _owned(condition: ColumnElement[bool], owned: ColumnElement[bool] | None) -> ColumnElement[bool]:
    return condition if owned is None else and_(condition, owned)


async def _values_left(
    conn: AsyncConnection, target: _Target, work: _TableWork, condition: ColumnElement[bool]
) -> int:
    """After the statement: subject rows whose anonymized column may still hold personal data.

    Every surrogate is a function of the row key (and the secret) or a constant, so each column
    must hold exactly its surrogate: ``IS DISTINCT FROM`` counts the rows that do not, in the
    database, without fetching them (a NULL surrogate: the rows that are not NULL).
    """
    if work.strategy == "delete":
        return 0
    columns = _changed_columns(work)
    if not columns:
        return 0
    table = target.tables[work.table]
    checks: list[ColumnElement[Any]] = []
    for change, owned in columns:
        wrong = value_differs(table.c[change.column], change)
        checks.append(func.sum(case((_owned(wrong, owned), 1), else_=0)))
    counts = (await conn.execute(select(*checks).select_from(table).where(condition))).one()
    return sum(int(c or 0) for c in counts)


async def _check_outside(
    conn: AsyncConnection, target: _Target, works: Sequence[_TableWork]
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for work in works:
        for ref in await _outside_counts(conn, target, work):
            counts[f"{ref.referencing_table}.{','.join(ref.referencing_columns)}"] = ref.rows
            if ref.action == "fail":
                raise ErasureBlocked(
                    f"system '{target.manifest.system}': foreign key {ref.constraint} from table "
                    f"'{ref.referencing_table}' references {ref.rows} row(s) of "
                    f"'{ref.referenced_table}' that erasure deletes; nothing was changed (set "
                    f"on_outside_reference of '{ref.referenced_table}' to set_null, delete or "
                    "anonymize, or manage the referencing table)",
                    extra={
                        "system": target.manifest.system,
                        "constraint": ref.constraint,
                        "referencing_table": ref.referencing_table,
                    },
                )
    return counts


async def _run_step(
    conn: AsyncConnection,
    target: _Target,
    work: _TableWork,
    outcome: ErasureOutcome,
    *,
    window: ColumnElement[bool] | None = None,
    first: bool = True,
    last: bool = True,
) -> int:
    """Run one table's statement (or one keyset batch of it) and verify it, in ``conn``'s
    transaction; returns the rows changed."""
    condition = work.condition if window is None else and_(work.condition, window)
    statements = list(work.before) if first else []
    statement = work.main
    if statement is not None and window is not None:
        statement = statement.where(window)
    changed = 0
    try:
        for before in statements:
            await conn.execute(before)
        if statement is not None:
            changed = max((await conn.execute(statement)).rowcount, 0)
    except DBAPIError as exc:
        refusal = constraint_refusal(exc)
        if refusal is None:
            raise
        raise _refused(target.manifest.system, work.table, refusal) from exc
    bucket = outcome.deleted if work.strategy == "delete" else outcome.anonymized
    if statement is not None:
        bucket[work.table] = bucket.get(work.table, 0) + changed
    if work.strategy == "delete" and last:
        outcome.verified_rows_left[work.table] = await _count(conn, target.tables[work.table], work.gone)
    if last:
        await _independent_check(conn, target, work, outcome)
    left = await _values_left(conn, target, work, condition)
    if left or work.strategy != "delete":
        outcome.verified_values_left[work.table] = outcome.verified_values_left.get(work.table, 0) + left
    return changed


def _checked(target: _Target, work: _TableWork) -> CheckedTable:
    paths = target.graph.paths_for(work.table)
    keeps = work.kept is not None or target.spec(work.table).on_outside_reference == "anonymize"
    links = tuple((p, link.changes) for p, link in zip(paths, work.links, strict=True))
    return CheckedTable(work.table, work.strategy, keeps, links)


async def _independent_check(
    conn: AsyncConnection, target: _Target, work: _TableWork, outcome: ErasureOutcome
) -> None:
    """Reflected evidence of the subject left in the table (see :mod:`app.engine.verification`)."""
    if target.key is None:
        return
    left = await independent_rows_left(
        conn,
        target.schema,
        target.manifest,
        target.tables[work.table],
        _checked(target, work),
        target.key,
        target.identity_values,
    )
    outcome.independent_left[work.table] = sum(left.values())


async def _scrub(conn: AsyncConnection, target: _Target, outcome: ErasureOutcome, *, own: bool) -> None:
    """Replace the subject's mentions in every scrubbed column, then count what is left."""
    values = target.identity_values
    scrubbed = await run_scrubs(
        conn,
        target.tables,
        target.manifest,
        values,
        batch_size=target.options.batch_size,
        own_transactions=own,
    )
    for label, rows in scrubbed.items():
        outcome.scrubbed[label] = outcome.scrubbed.get(label, 0) + rows


async def _check_mentions(conn: AsyncConnection, target: _Target, outcome: ErasureOutcome) -> None:
    outcome.mentions_left = await mentions_left(conn, target.tables, target.manifest, target.identity_values)


async def execute_erasure(
    engine: AsyncEngine,
    manifest: Manifest,
    identities: Mapping[str, str],
    options: ErasureOptions,
    *,
    cursor: Mapping[str, Any] | None = None,
    save_cursor: SaveCursor | None = None,
) -> ErasureOutcome:
    """Erase the subject in one system; returns counts and the verification result.

    One transaction for the whole system unless a table holds more than
    ``options.batch_threshold`` of the subject's rows: then every table is a step of its own and
    large tables run in keyset batches of ``options.batch_size``, each batch its own transaction,
    the cursor handed to ``save_cursor`` after each commit. Passing the last saved cursor back
    resumes at the next batch. A subject nobody matches is a no-op (``found`` is False).

    Raises:
        ErasureBlocked: an outside reference blocks the erasure (nothing changed), or a
            constraint refused the change (the system's transaction rolled back).
        ManifestInvalid: the manifest does not fit the target's schema.
    """
    try:
        async with engine.connect() as conn:
            await _prepare_connection(conn)
            target = await _load_target(conn, manifest, options)
            subject_table = target.tables[manifest.subject.table]
            key = await resolve_subject(conn, manifest, subject_table, identities, options.tenant)
            outcome = ErasureOutcome(manifest.system, found=key is not None, subject_key=key)
            if cursor:
                _restore(outcome, cursor)
            if key is None:
                await conn.rollback()
                return outcome
            target.key = key
            target.identity_values = await identity_values(conn, subject_table, manifest, key)
            works = _all_work(target, Binds(key))
            sizes = await _sizes(conn, target, works)
            await conn.rollback()
            batched = any(n > options.batch_threshold and _batchable(target, t) for t, n in sizes.items())
            if not batched and not cursor:
                await _single_transaction(conn, target, works, outcome)
            else:
                await _stepwise(conn, target, works, sizes, outcome, cursor, save_cursor)
    except IntegrityError as exc:
        raise _refused(manifest.system, manifest.subject.table, integrity_detail(exc)) from exc
    return outcome


def _refused(system: str, table: str, detail: IntegrityDetail) -> ErasureBlocked:
    """The target refused a statement: name the constraint and the table (never a value)."""
    return ErasureBlocked(
        f"system '{system}': the target refused the erasure of table '{table}': "
        f"{detail.describe(table)} does not hold; the transaction was rolled back",
        extra={
            "system": system,
            "table": detail.table or table,
            "constraint": detail.constraint,
            "constraint_kind": detail.kind,
        },
    )


async def _sizes(conn: AsyncConnection, target: _Target, works: Sequence[_TableWork]) -> dict[str, int]:
    """The subject's rows per table, in one round trip."""
    counts = [count_statement(target.tables[w.table], w.condition).scalar_subquery() for w in works]
    row = (await conn.execute(select(*counts))).one()
    return {w.table: int(n) for w, n in zip(works, row, strict=True)}


async def _single_transaction(
    conn: AsyncConnection, target: _Target, works: Sequence[_TableWork], outcome: ErasureOutcome
) -> None:
    async with conn.begin():
        outcome.outside_references = await _check_outside(conn, target, works)
        await _scrub(conn, target, outcome, own=False)
        for work in works:
            await _run_step(conn, target, work, outcome)
        await _check_mentions(conn, target, outcome)
        _require_verified(target, outcome)


def _require_verified(target: _Target, outcome: ErasureOutcome) -> None:
    if not outcome.verified:
        raise ErasureBlocked(
            f"system '{target.manifest.system}': verification found subject data left after "
            f"erasure ({_left_summary(outcome)}); the transaction was rolled back",
            extra={
                "rows_left": outcome.verified_rows_left,
                "values_left": outcome.verified_values_left,
                "mentions_left": outcome.mentions_left,
                "independent_rows_left": outcome.independent_left,
            },
        )


def _left_summary(outcome: ErasureOutcome) -> str:
    """Which checks found what, by table (counts and names only)."""
    parts = []
    for what, counts in (
        ("rows along the manifest's paths", outcome.verified_rows_left),
        ("original values", outcome.verified_values_left),
        ("mentions", outcome.mentions_left),
        (
            "rows found by reflected keys or identity values, independently of the paths",
            outcome.independent_left,
        ),
    ):
        found = {name: n for name, n in counts.items() if n}
        if found:
            parts.append(f"{what}: " + ", ".join(f"{name} {n}" for name, n in sorted(found.items())))
    return "; ".join(parts)


def _restore(outcome: ErasureOutcome, cursor: Mapping[str, Any]) -> None:
    outcome.deleted = dict(cursor.get("deleted", {}))
    outcome.anonymized = dict(cursor.get("anonymized", {}))
    outcome.batches = int(cursor.get("batches", 0))
    outcome.scrubbed = dict(cursor.get("scrubbed", {}))


def _cursor(outcome: ErasureOutcome, step: int, after: Any) -> dict[str, Any]:
    return {
        "step": step,
        "after": after,
        "deleted": dict(outcome.deleted),
        "anonymized": dict(outcome.anonymized),
        "batches": outcome.batches,
        "scrubbed": dict(outcome.scrubbed),
        "scrub_done": True,
    }


async def _stepwise(
    conn: AsyncConnection,
    target: _Target,
    works: Sequence[_TableWork],
    sizes: Mapping[str, int],
    outcome: ErasureOutcome,
    cursor: Mapping[str, Any] | None,
    save_cursor: SaveCursor | None,
) -> None:
    """Each table its own step, large ones in keyset batches; resumable from ``cursor``."""
    start = int(cursor["step"]) if cursor else 0
    after = cursor.get("after") if cursor else None
    async with conn.begin():
        outcome.outside_references = await _check_outside(conn, target, works[start:])
    if not (cursor and cursor.get("scrub_done")):
        # first, while the subject row still holds the identity values a resumed run re-reads
        await _scrub(conn, target, outcome, own=True)
        async with conn.begin():
            await _check_mentions(conn, target, outcome)
        _require_verified(target, outcome)
        if save_cursor is not None:
            await save_cursor(_cursor(outcome, start, after))
    for index in range(start, len(works)):
        work = works[index]
        if sizes[work.table] > target.options.batch_threshold and _batchable(target, work.table):
            await _batches(conn, target, work, outcome, index, after, save_cursor)
        else:
            async with conn.begin():
                await _run_step(conn, target, work, outcome)
                _require_verified(target, outcome)
            outcome.batches += 1
            if save_cursor is not None:
                await save_cursor(_cursor(outcome, index + 1, None))
        after = None


async def _batches(
    conn: AsyncConnection,
    target: _Target,
    work: _TableWork,
    outcome: ErasureOutcome,
    step: int,
    after: Any,
    save_cursor: SaveCursor | None,
) -> None:
    """Keyset batches over the table's single-column key; each batch commits, then the cursor."""
    table = target.tables[work.table]
    key = target.schema.tables[work.table].primary_key[0]
    column = table.c[key]
    first = after is None
    while True:
        async with conn.begin():
            bound_query = keyset_bounds(table, key, work.condition, after, target.options.batch_size)
            upto = (await conn.execute(bound_query)).scalar_one_or_none()
            if upto is None:
                outcome.verified_rows_left[work.table] = (
                    await _count(conn, table, work.gone) if work.strategy == "delete" else 0
                )
                await _independent_check(conn, target, work, outcome)
                _require_verified(target, outcome)
                break
            window = column <= upto if after is None else and_(column > after, column <= upto)
            await _run_step(conn, target, work, outcome, window=window, first=first, last=False)
            _require_verified(target, outcome)
        outcome.batches += 1
        first = False
        after = upto
        if save_cursor is not None:
            await save_cursor(_cursor(outcome, step, _jsonable(upto)))
        if target.options.batch_delay_seconds:
            await asyncio.sleep(target.options.batch_delay_seconds)
    if save_cursor is not None:
        await save_cursor(_cursor(outcome, step + 1, None))


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, int | str | float) else str(value)


# --- the request worker's handler ----------------------------------------------------------


def plan_document(plan: SystemPlan) -> dict[str, Any]:
    """The plan as plain JSON data (what the store records and the API returns)."""
    document = asdict(plan)
    document["rows"] = plan.rows
    return document


def _options(run: RequestRun) -> ErasureOptions:
    settings = run.settings
    return ErasureOptions(
        secret=settings.audit_key,
        batch_threshold=settings.erasure_batch_threshold,
        batch_size=settings.erasure_batch_size,
        tenant=run.tenant,
        batch_delay_seconds=settings.erasure_batch_delay_seconds,
    )


async def _plan_only(run: RequestRun, system: SystemRun, target: AsyncEngine) -> None:
    async with target.connect() as conn:
        plan = await plan_erasure(conn, system.manifest, run.identities, _options(run))
    await run.progress.record_plan(system.system, plan_document(plan))
    outcome = SystemOutcome(
        not_found=not plan.found,
        counts={t.table: t.rows for t in plan.tables},
        audit={"dry_run": True, "rows": plan.rows, "blocked": plan.blocked is not None},
    )
    await run.progress.complete_system(system.system, outcome, action="erasure.planned")


async def _erase_system(run: RequestRun, system: SystemRun, target: AsyncEngine) -> dict[str, int]:
    options = _options(run)
    secret = options.secret or ""
    manifest = system.manifest
    cursor = system.cursor
    reference = str(cursor["subject_key_ref"]) if cursor and "subject_key_ref" in cursor else None
    if cursor is None:
        # Every erasure executes its plan: a subject erased before (a tombstone exists) whose rows
        # came back from a backup or a re-import is erased again; one with nothing left is a no-op.
        async with target.connect() as conn:
            plan = await plan_erasure(conn, manifest, run.identities, options)
        await run.progress.record_plan(system.system, plan_document(plan))

    async def save(state: dict[str, Any]) -> None:
        state["subject_key_ref"] = reference
        counts = {**state.get("deleted", {}), **state.get("anonymized", {})}
        await run.progress.save_cursor(system.system, state, counts)

    outcome = await execute_erasure(
        target, manifest, run.identities, options, cursor=cursor, save_cursor=save
    )
    if outcome.subject_key is not None:
        reference = subject_key_reference(secret, system.system, outcome.subject_key)
    found = outcome.found or reference is not None
    counts = {**outcome.deleted, **outcome.anonymized}
    result = SystemOutcome(
        not_found=not found,
        counts=counts,
        audit=outcome.audit_payload(),
        tombstones=[reference] if found and reference is not None else [],
        subject_key_ref=reference,
    )
    await run.progress.complete_system(system.system, result, action="erasure.system_completed")
    return counts


async def run_erasure(run: RequestRun) -> RequestOutcome:
    """The worker's erasure handler: per system, plan (dry run) or erase, tombstone, complete.

    Systems already completed by an earlier attempt are skipped; a system with a saved cursor
    resumes at its next batch. An outside reference or a refused constraint fails the request
    naming the system (that system's transaction rolled back; earlier systems stay erased).
    """
    totals: dict[str, int] = {}
    for system in run.systems:
        if system.status == "completed":
            continue
        target = await run.targets(system.system, system.manifest)
        try:
            if run.dry_run:
                await _plan_only(run, system, target)
                continue
            counts = await _erase_system(run, system, target)
        except ErasureBlocked as exc:
            raise RequestFailed(exc.detail, system=system.system) from exc
        totals[system.system] = sum(counts.values())
    return RequestOutcome(audit={"dry_run": run.dry_run, "rows": sum(totals.values())})
