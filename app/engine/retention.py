"""Retention purges on a target: reflection checks, dry-run counts, and short keyset batches."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlalchemy import (
    Column,
    ColumnElement,
    Date,
    DateTime,
    Delete,
    Index,
    Integer,
    Table,
    UniqueConstraint,
    Update,
    and_,
    cast,
    column,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy import table as sa_table
from sqlalchemy.dialects.postgresql import REGCLASS
from sqlalchemy.engine import Connection
from sqlalchemy.exc import CompileError, DBAPIError, NoSuchTableError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import UserDefinedType

from app.engine.reflection import foreign_keys_into, reflect_tables
from app.engine.surrogates import SurrogateContext, SurrogateError, hash_key_from_secret, surrogate_expression
from app.lib.errors import ValidationFailed
from app.manifest.durations import parse_duration
from app.manifest.model import Surrogate
from app.manifest.names import split_table

__all__ = (
    "ACTIONS",
    "FILTER_OPERATORS",
    "BatchLimits",
    "BatchReport",
    "DryRun",
    "PolicyFilter",
    "PreparedPurge",
    "PurgeOutcome",
    "PurgePolicy",
    "PurgeStalled",
    "SurrogateRule",
    "check_policy_shape",
    "compute_cutoff",
    "dry_run",
    "json_cursor",
    "prepare_purge",
    "purge_in_batches",
    "render_sql",
    "restore_cursor",
)

Action = Literal["delete", "anonymize", "soft_delete"]
ACTIONS: tuple[str, ...] = ("delete", "anonymize", "soft_delete")
FILTER_OPERATORS: tuple[str, ...] = (
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "in",
    "not_in",
    "is_null",
    "not_null",
)
"""The only comparisons a retention filter may use; values are always bound parameters."""
_VALUELESS = frozenset({"is_null", "not_null"})
_LIST_OPERATORS = frozenset({"in", "not_in"})
_SAFE_ON_DELETE = frozenset({"CASCADE", "SET NULL", "SET DEFAULT"})
_LOCK_TIMEOUT_STATES = frozenset({"55P03"})  # PostgreSQL lock_not_available
_STATEMENT_TIMEOUT_STATES = frozenset({"57014"})  # PostgreSQL query_canceled
_MYSQL_LOCK_WAIT = frozenset({1205, 1213})  # lock wait timeout, deadlock
_MYSQL_STATEMENT_TIMEOUT = frozenset({1969, 3024})  # MariaDB max_statement_time, MySQL
MAX_ATTEMPTS_PER_BATCH = 5
MAX_WINDOW_FACTOR = 64
MAX_BLOCK_WINDOW_FACTOR = 2
DEFAULT_ROWS_PER_BLOCK = 60
MIN_BLOCKS_PER_BATCH = 4
"""A batch's key range spans at most this many times the batch size."""


@dataclass(frozen=True)
class PolicyFilter:
    """One structured condition: ``column <op> value`` (never raw SQL)."""

    column: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class SurrogateRule:
    """What ``anonymize`` writes into one column: a manifest surrogate or its short form
    (``email``, ``unique``, ``null``, ``constant:n/a`` ...).

    ``spec=None`` asks for the type-aware default.
    """

    spec: str | Surrogate | None = None


@dataclass(frozen=True)
class PurgePolicy:
    """What one retention policy asks of one table of one system."""

    system: str
    table: str
    age_column: str | None
    older_than: str
    action: str = "delete"
    soft_delete_column: str | None = None
    filters: tuple[PolicyFilter, ...] = ()
    batch_size: int = 1000
    surrogates: Mapping[str, SurrogateRule] = field(default_factory=dict)
    """Columns ``anonymize`` rewrites (from the manifest's table spec), with their surrogates."""
    secret: str | None = None
    """Service secret keying the ``hash`` surrogate (the audit key), as in erasure."""
    schemas: tuple[str, ...] = ()
    """Named schemas of the manifest (``manifest_schemas``): where referencing tables are sought."""


@dataclass(frozen=True)
class BatchLimits:
    """Per-batch safety limits and the overall runtime budget of one run (segment)."""

    lock_timeout_ms: int = 2000
    statement_timeout_ms: int = 30_000
    max_runtime_seconds: float = 600.0
    retry_pause_seconds: float = 0.2


@dataclass(frozen=True)
class DryRun:
    """What a real run would touch now: the row count and the statement (batched when run)."""

    count: int
    sql: str


@dataclass(frozen=True)
class BatchReport:
    """One committed batch: rows it touched, where the keyset stands, how long locks were held."""

    rows: int
    cursor: list[Any]
    lock_seconds: float
    window: int
    """How many consecutive keys the batch's range spanned (adapts to how sparse due rows are)."""


@dataclass(frozen=True)
class PurgeOutcome:
    """How a run (segment) ended: ``finished`` False when the runtime budget ran out first."""

    finished: bool
    rows: int
    batches: int
    cursor: list[Any] | None
    longest_lock_seconds: float


class PurgeStalled(Exception):
    """A batch kept hitting lock or statement timeouts; the run stops, resumable later."""


def _refuse(policy: PurgePolicy, field_name: str, message: str) -> ValidationFailed:
    detail = f"retention policy on {policy.system}.{policy.table}: {message}"
    return ValidationFailed(detail, [{"field": field_name, "message": message}])


def compute_cutoff(older_than: str, now: datetime | None = None) -> datetime:
    """Rows whose age column is before this instant are due (calendar-aware: P1M, P7Y).

    Computed once per run and stored with it, so a resumed run purges exactly the rows an
    uninterrupted one would have.
    """
    moment = now or datetime.now(UTC)
    return parse_duration(older_than).before(moment)


def check_policy_shape(policy: PurgePolicy) -> None:
    """Checks that need no database: age column present, action, operators, values, batch size.

    Raises:
        ValidationFailed: naming the offending field.
    """
    if not policy.age_column:
        raise _refuse(policy, "age_column", "an age column is required (rows are purged by age)")
    try:
        parse_duration(policy.older_than)
    except ValueError as exc:
        raise _refuse(policy, "older_than", str(exc)) from exc
    if policy.action not in ACTIONS:
        raise _refuse(policy, "action", f"unknown action '{policy.action}' (one of {', '.join(ACTIONS)})")
    if policy.action == "soft_delete" and not policy.soft_delete_column:
        raise _refuse(policy, "soft_delete_column", "action soft_delete needs soft_delete_column")
    if not 1 <= policy.batch_size <= 100_000:
        raise _refuse(policy, "batch_size", "batch_size must be between 1 and 100000")
    for index, condition in enumerate(policy.filters):
        _check_filter_shape(policy, index, condition)


def _check_filter_shape(policy: PurgePolicy, index: int, condition: PolicyFilter) -> None:
    where = f"filters[{index}]"
    if condition.op not in FILTER_OPERATORS:
        raise _refuse(
            policy, f"{where}.op", f"unknown operator '{condition.op}' (one of {' '.join(FILTER_OPERATORS)})"
        )
    if condition.op in _VALUELESS:
        if condition.value is not None:
            raise _refuse(policy, f"{where}.value", f"operator {condition.op} takes no value")
    elif condition.op in _LIST_OPERATORS:
        if not isinstance(condition.value, list | tuple) or not condition.value:
            raise _refuse(policy, f"{where}.value", f"operator {condition.op} needs a non-empty list")
    elif condition.value is None or isinstance(condition.value, list | tuple | dict):
        raise _refuse(policy, f"{where}.value", f"operator {condition.op} needs one scalar value")


# --- reflection and refusal ----------------------------------------------------------------


@dataclass(frozen=True)
class PreparedPurge:
    """A policy checked against the live table: the reflected table, its key, its SET clause."""

    policy: PurgePolicy
    table: Table
    key: tuple[Column[Any], ...]
    assignments: Mapping[str, ColumnElement[Any]]
    dialect: str
    is_mariadb: bool = False
    rows_per_block: int | None = None
    """Set on PostgreSQL heap tables: batches then walk physical block ranges (see ``_block_batch``)."""

    def condition(self, cutoff: datetime) -> ColumnElement[bool]:
        """Rows due for this run: older than the cut-off, matching the filters, not yet purged."""
        age = self.table.c[self.policy.age_column or ""]
        parts: list[ColumnElement[bool]] = [age < _bound_cutoff(age, cutoff)]
        parts.extend(_filter_clause(self.table.c[f.column], f) for f in self.policy.filters)
        if self.policy.action == "soft_delete":
            parts.append(self.table.c[self.policy.soft_delete_column or ""].is_(None))
        elif self.policy.action == "anonymize":
            parts.append(or_(*(self.table.c[n].is_distinct_from(v) for n, v in self.assignments.items())))
        return and_(*parts)

    def statement(self, cutoff: datetime, purge_at: datetime) -> Delete | Update:
        """The purge statement over every due row (batches add a key range to it)."""
        where = self.condition(cutoff)
        if self.policy.action == "delete":
            return delete(self.table).where(where)
        values: Mapping[str, Any] = self.assignments
        if self.policy.action == "soft_delete":
            column = self.table.c[self.policy.soft_delete_column or ""]
            values = {column.name: _bound_cutoff(column, purge_at)}
        return update(self.table).where(where).values(dict(values))


def _bound_cutoff(column: ColumnElement[Any], moment: datetime) -> Any:
    """The instant as the column's type expects it (UTC; naive for columns without a zone)."""
    column_type = column.type
    if isinstance(column_type, DateTime):
        return moment if column_type.timezone else moment.astimezone(UTC).replace(tzinfo=None)
    if isinstance(column_type, Date):
        return moment.astimezone(UTC).date()
    return moment


def _filter_clause(column: ColumnElement[Any], condition: PolicyFilter) -> ColumnElement[bool]:
    value = condition.value
    clauses: dict[str, Callable[[], ColumnElement[bool]]] = {
        "eq": lambda: column == value,
        "ne": lambda: column != value,
        "lt": lambda: column < value,
        "le": lambda: column <= value,
        "gt": lambda: column > value,
        "ge": lambda: column >= value,
        "in": lambda: column.in_(list(value)),
        "not_in": lambda: column.not_in(list(value)),
        "is_null": lambda: column.is_(None),
        "not_null": lambda: column.is_not(None),
    }
    return clauses[condition.op]()


def _reflect(
    sync_connection: Connection, name: str, schemas: Sequence[str]
) -> tuple[Table, list[tuple[str, dict[str, Any]]]]:
    """The table, and every foreign key (of any table of the target's schemas) that points at it."""
    tables, located = reflect_tables(sync_connection, [*schemas, *_schema_of(name)], [name])
    if name not in tables:
        raise NoSuchTableError(name)
    table = tables[name]
    incoming = foreign_keys_into(sync_connection, located, name)
    if sync_connection.dialect.name == "sqlite":
        incoming = [
            (referring, _sqlite_on_delete(sync_connection, referring, fk)) for referring, fk in incoming
        ]
    return table, incoming


def _schema_of(name: str) -> list[str]:
    schema, _ = split_table(name)
    return [] if schema is None else [schema]


def _sqlite_on_delete(sync_connection: Connection, referring: str, fk: dict[str, Any]) -> dict[str, Any]:
    """SQLite's reflection misses ``ON DELETE`` of inline ``REFERENCES``; its pragma knows it."""
    quoted = sync_connection.dialect.identifier_preparer.quote(referring)
    rows = sync_connection.exec_driver_sql(f"PRAGMA foreign_key_list({quoted})").mappings().all()
    actions = {row["from"]: str(row["on_delete"]) for row in rows}
    action = actions.get(fk["constrained_columns"][0], "NO ACTION")
    return {**fk, "options": {**(fk.get("options") or {}), "ondelete": action}}


async def prepare_purge(connection: AsyncConnection, policy: PurgePolicy) -> PreparedPurge:
    """Check a policy against the live target by reflection and build its statements.

    Refuses (422 with the field and a precise message): no age column, an unknown table or
    column, an age column that is not a date/time, a table without primary key (keyset batches
    need one), ``delete`` on a table other tables reference without ``ON DELETE CASCADE/SET
    NULL``, ``anonymize`` with no personal column or no usable surrogate.
    """
    check_policy_shape(policy)
    try:
        table, incoming = await connection.run_sync(_reflect, policy.table, policy.schemas)
    except NoSuchTableError as exc:
        raise _refuse(policy, "table", f"table '{policy.table}' does not exist in the target") from exc
    _check_columns(policy, table)
    key = tuple(table.primary_key.columns)
    if not key:
        raise _refuse(policy, "table", f"table '{policy.table}' has no primary key (keyset batches need one)")
    if policy.action == "delete":
        _check_incoming(policy, incoming)
    dialect = connection.dialect
    anonymize = policy.action == "anonymize"
    assignments = _assignments(policy, table, key, dialect.name) if anonymize else {}
    return PreparedPurge(
        policy=policy,
        table=table,
        key=key,
        assignments=assignments,
        dialect=dialect.name,
        is_mariadb=bool(getattr(dialect, "is_mariadb", False)),
        rows_per_block=await _heap_density(connection, table, policy.batch_size),
    )


class _Tid(UserDefinedType[Any]):
    """PostgreSQL's ``tid`` (a row's physical address: block, offset)."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "tid"


_CTID = column("ctid", _Tid())


def _block_start(block: int) -> ColumnElement[Any]:
    return cast(literal(f"({int(block)},0)"), _Tid())


async def _heap_density(connection: AsyncConnection, table: Table, batch_size: int) -> int | None:
    """Rows per 8 kB block of an ordinary PostgreSQL (>= 14) table; None elsewhere.

    On such tables a batch is a range of physical blocks (``ctid >= '(a,0)' AND ctid < '(b,0)'``,
    a TID range scan): the same sequential access as one big ``DELETE``, so a purge costs about
    what the single statement costs, while each batch still locks only the rows of its range.
    Partitioned tables, views, older servers, and batch sizes smaller than a few blocks' worth
    of rows (a batch could not honour them) use primary-key ranges.
    """
    version = getattr(connection.dialect, "server_version_info", None) or (0,)
    if connection.dialect.name != "postgresql" or version < (14,):
        return None
    name = connection.dialect.identifier_preparer.format_table(table)
    pg_class = sa_table("pg_class", column("oid"), column("relkind"), column("reltuples"), column("relpages"))
    found = (
        await connection.execute(
            select(pg_class.c.relkind, pg_class.c.reltuples, pg_class.c.relpages).where(
                pg_class.c.oid == cast(literal(name), REGCLASS)
            )
        )
    ).first()
    if found is None or found[0] not in ("r", b"r"):  # asyncpg returns "char" as bytes
        return None
    tuples, pages = float(found[1] or 0), int(found[2] or 0)
    density = max(1, round(tuples / pages)) if tuples > 0 and pages > 0 else DEFAULT_ROWS_PER_BLOCK
    return density if batch_size >= density * MIN_BLOCKS_PER_BATCH else None


async def _relation_blocks(connection: AsyncConnection, table: Table) -> int:
    name = connection.dialect.identifier_preparer.format_table(table)
    size = func.pg_relation_size(cast(literal(name), REGCLASS))
    block = cast(func.current_setting("block_size"), Integer)
    return int(await connection.scalar(select(size / block)) or 0)


def _check_columns(policy: PurgePolicy, table: Table) -> None:
    def known(field_name: str, column: str) -> Column[Any]:
        if column not in table.c:
            raise _refuse(policy, field_name, f"column '{column}' does not exist in table '{policy.table}'")
        return table.c[column]

    age = known("age_column", policy.age_column or "")
    if not isinstance(age.type, Date | DateTime):
        raise _refuse(
            policy, "age_column", f"age column '{age.name}' is {age.type}, not a date or timestamp column"
        )
    for index, condition in enumerate(policy.filters):
        known(f"filters[{index}].column", condition.column)
    if policy.action == "soft_delete":
        column = known("soft_delete_column", policy.soft_delete_column or "")
        if not isinstance(column.type, Date | DateTime):
            raise _refuse(
                policy, "soft_delete_column", f"column '{column.name}' must be a date or timestamp column"
            )
        if not column.nullable:
            raise _refuse(
                policy, "soft_delete_column", f"column '{column.name}' must be nullable (NULL = live)"
            )
    for name in policy.surrogates:
        known(f"surrogates.{name}", name)


def _check_incoming(policy: PurgePolicy, incoming: Sequence[tuple[str, dict[str, Any]]]) -> None:
    for referring, fk in incoming:
        on_delete = str((fk.get("options") or {}).get("ondelete") or "NO ACTION").upper()
        if on_delete not in _SAFE_ON_DELETE:
            columns = ", ".join(fk["constrained_columns"])
            raise _refuse(
                policy,
                "action",
                f"cannot delete rows of '{policy.table}': {referring}({columns}) references it "
                f"with ON DELETE {on_delete}; use action anonymize or soft_delete, or add ON DELETE CASCADE",
            )


def _assignments(
    policy: PurgePolicy, table: Table, key: Sequence[Column[Any]], dialect: str
) -> dict[str, ColumnElement[Any]]:
    """The SET clause of ``anonymize``: each column's surrogate, computed in SQL per row."""
    if not policy.surrogates:
        raise _refuse(
            policy,
            "action",
            f"table '{policy.table}' has no personal columns in the manifest of "
            f"'{policy.system}' to anonymize",
        )
    protected = {c.name for c in key} | {policy.age_column}
    unique = _unique_columns(table)
    hash_key = hash_key_from_secret(policy.secret) if policy.secret else None
    values: dict[str, ColumnElement[Any]] = {}
    for name, rule in policy.surrogates.items():
        if name in protected:
            raise _refuse(policy, f"surrogates.{name}", f"column '{name}' is the key or the age column")
        context = SurrogateContext(
            table=table,
            column=name,
            key_columns=tuple(c.name for c in key),
            dialect=dialect,
            unique=name in unique,
            hash_key=hash_key,
        )
        try:
            values[name] = surrogate_expression(context, rule.spec)
        except SurrogateError as exc:
            raise _refuse(policy, f"surrogates.{name}", str(exc)) from exc
    return values


def _unique_columns(table: Table) -> set[str]:
    """Columns that are unique on their own (constraint, unique index, or column flag)."""
    single = [
        list(c.columns)
        for c in [*table.constraints, *table.indexes]
        if isinstance(c, UniqueConstraint) or (isinstance(c, Index) and c.unique)
    ]
    names = {cols[0].name for cols in single if len(cols) == 1}
    return names | {c.name for c in table.columns if c.unique}


# --- dry run -------------------------------------------------------------------------------


def render_sql(connection: AsyncConnection, statement: Any) -> str:
    """The statement as this dialect runs it, values inlined where the dialect can render them."""
    try:
        compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    except (CompileError, NotImplementedError, TypeError):
        compiled = statement.compile(dialect=connection.dialect)
    return str(compiled).strip()


async def dry_run(connection: AsyncConnection, prepared: PreparedPurge, cutoff: datetime) -> DryRun:
    """Count the due rows and show the purge statement; nothing is changed."""
    now = datetime.now(UTC)
    where = prepared.condition(cutoff)
    count = await connection.scalar(select(func.count()).select_from(prepared.table).where(where))
    return DryRun(count=int(count or 0), sql=render_sql(connection, prepared.statement(cutoff, now)))


# --- keyset batches ------------------------------------------------------------------------


def _key_expression(prepared: PreparedPurge) -> ColumnElement[Any]:
    if len(prepared.key) == 1:
        return prepared.key[0]
    return tuple_(*prepared.key)


def _key_value(prepared: PreparedPurge, cursor: Sequence[Any]) -> Any:
    return cursor[0] if len(prepared.key) == 1 else tuple_(*(literal(v) for v in cursor))


async def _set_limits(connection: AsyncConnection, prepared: PreparedPurge, limits: BatchLimits) -> list[Any]:
    """Bound how long one batch may wait for locks and run, in each dialect's own terms.

    Returns what session-level settings were before (MariaDB, SQLite), for :func:`_reset_limits`.
    """
    if prepared.dialect == "postgresql":  # SET LOCAL: ends with the transaction
        await connection.execute(
            select(
                func.set_config("lock_timeout", f"{limits.lock_timeout_ms}ms", True),
                func.set_config("statement_timeout", f"{limits.statement_timeout_ms}ms", True),
            )
        )
        return []
    if prepared.dialect == "mysql":
        names = ["innodb_lock_wait_timeout", *(["max_statement_time"] if prepared.is_mariadb else [])]
        saved = list((await connection.execute(text(_mysql_read(names)))).one())
        wait = max(1, math.ceil(limits.lock_timeout_ms / 1000))
        await connection.execute(text("SET SESSION innodb_lock_wait_timeout = :wait"), {"wait": wait})
        if prepared.is_mariadb:
            seconds = limits.statement_timeout_ms / 1000
            await connection.execute(text("SET SESSION max_statement_time = :seconds"), {"seconds": seconds})
        return saved
    if prepared.dialect == "sqlite":
        saved = [int((await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar() or 0)]
        await connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(limits.lock_timeout_ms)}")
        return saved
    return []


def _mysql_read(names: Sequence[str]) -> str:
    return "SELECT " + ", ".join(f"@@SESSION.{name}" for name in names)


async def _reset_limits(connection: AsyncConnection, prepared: PreparedPurge, saved: Sequence[Any]) -> None:
    """Session settings outlive the batch: give the pooled connection back as it was."""
    if not saved:
        return
    if prepared.dialect == "mysql":
        await connection.execute(text("SET SESSION innodb_lock_wait_timeout = :v"), {"v": saved[0]})
        if prepared.is_mariadb:
            await connection.execute(text("SET SESSION max_statement_time = :v"), {"v": saved[1]})
    elif prepared.dialect == "sqlite":
        await connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(saved[0])}")


async def _block_batch(
    engine: AsyncEngine,
    prepared: PreparedPurge,
    statement: Delete | Update,
    cursor: Sequence[Any] | None,
    window: int,
    limits: BatchLimits,
) -> tuple[BatchReport, bool]:
    """Purge the due rows of the next ``window`` physical blocks (PostgreSQL heap tables)."""
    start = int(cursor[0]) if cursor else 0
    end = start + window
    async with engine.connect() as connection, connection.begin():
        await _set_limits(connection, prepared, limits)
        last = end >= await _relation_blocks(connection, prepared.table)
        bounded = statement.where(_block_start(start) <= _CTID)
        if not last:
            bounded = bounded.where(_block_start(end) > _CTID)
        started = time.perf_counter()
        result = await connection.execute(bounded)
    held = time.perf_counter() - started
    return BatchReport(int(result.rowcount or 0), [end], held, window), last


async def _one_batch(
    engine: AsyncEngine,
    prepared: PreparedPurge,
    statement: Delete | Update,
    where: ColumnElement[bool],
    cursor: Sequence[Any] | None,
    window: int,
    limits: BatchLimits,
) -> tuple[BatchReport, bool]:
    """Purge the due rows among the next ``window`` keys after ``cursor``, in one transaction.

    The range is found on the primary key alone (an index-only walk), so the cost of a batch does
    not grow with the number of due rows left, whatever index the planner would pick for the age
    condition. A window wider than the batch size stops at the batch-size-th due row.
    """
    key = _key_expression(prepared)
    limit = prepared.policy.batch_size
    after = key > _key_value(prepared, cursor) if cursor is not None else None
    edge = select(*prepared.key).order_by(*prepared.key).offset(window - 1).limit(1)
    nth_due = select(*prepared.key).where(where).order_by(*prepared.key).offset(limit - 1).limit(1)
    bounded = statement
    if after is not None:
        edge, nth_due, bounded = edge.where(after), nth_due.where(after), bounded.where(after)
    saved: list[Any] = []
    async with engine.connect() as connection:
        try:
            async with connection.begin():
                saved = await _set_limits(connection, prepared, limits)
                upper = (await connection.execute(edge)).first()
                if upper is not None and window > limit:
                    capped = nth_due.where(key <= _key_value(prepared, list(upper)))
                    upper = (await connection.execute(capped)).first() or upper
                if upper is not None:
                    bounded = bounded.where(key <= _key_value(prepared, list(upper)))
                started = time.perf_counter()
                result = await connection.execute(bounded)
            held = time.perf_counter() - started
        finally:
            await _reset_limits(connection, prepared, saved)
    position = list(upper) if upper is not None else list(cursor or [])
    return BatchReport(int(result.rowcount or 0), position, held, window), upper is None


def _first_window(prepared: PreparedPurge) -> int:
    """Keys (or, on PostgreSQL heap tables, blocks) the first batch spans: ~``batch_size`` rows."""
    limit = prepared.policy.batch_size
    if prepared.rows_per_block is None:
        return limit
    return max(1, limit // prepared.rows_per_block)


def _max_window(prepared: PreparedPurge) -> int:
    factor = MAX_WINDOW_FACTOR if prepared.rows_per_block is None else MAX_BLOCK_WINDOW_FACTOR
    return _first_window(prepared) * factor


def _next_window(window: int, rows: int, limit: int, widest: int) -> int:
    """Widen the range while batches come back sparse, narrow it when they fill up."""
    if rows * 4 < limit * 3:
        return min(window * 2, widest)
    if rows >= limit:
        return max(1, window // 2)
    return window


def _timeout_kind(exc: DBAPIError) -> str | None:
    """``lock`` or ``statement`` when the error is one of our own timeouts, else None."""
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state in _LOCK_TIMEOUT_STATES:
        return "lock"
    if state in _STATEMENT_TIMEOUT_STATES:
        return "statement"
    args = getattr(orig, "args", ())
    errno = args[0] if args and isinstance(args[0], int) else None
    if errno in _MYSQL_LOCK_WAIT:
        return "lock"
    if errno in _MYSQL_STATEMENT_TIMEOUT:
        return "statement"
    if "database is locked" in str(orig):
        return "lock"
    return None


async def purge_in_batches(
    engine: AsyncEngine,
    prepared: PreparedPurge,
    *,
    cutoff: datetime,
    purge_at: datetime,
    cursor: Sequence[Any] | None,
    limits: BatchLimits,
    on_batch: Callable[[BatchReport], Awaitable[None]],
) -> PurgeOutcome:
    """Purge every due row in keyset batches, each committed on its own, until done or out of time.

    ``on_batch`` runs after each commit (persist the cursor there): a run that dies between two
    batches resumes from the last persisted cursor with the same ``cutoff`` and ``purge_at``; a
    batch committed on the target but not recorded is redone and touches nothing, because the
    condition excludes rows already purged. A lock timeout retries the batch after a pause; a
    statement timeout halves the batch; either, repeated, raises :class:`PurgeStalled`.
    """
    where = prepared.condition(cutoff)
    statement = prepared.statement(cutoff, purge_at)
    deadline = time.monotonic() + limits.max_runtime_seconds
    limit = prepared.policy.batch_size
    window, rows, batches, longest = _first_window(prepared), 0, 0, 0.0
    position = list(cursor) if cursor is not None else None
    while time.monotonic() < deadline:
        report, last = await _batch_with_retries(engine, prepared, statement, where, position, window, limits)
        rows, batches, longest = rows + report.rows, batches + 1, max(longest, report.lock_seconds)
        position = report.cursor or position
        window = _next_window(report.window, report.rows, limit, _max_window(prepared))
        await on_batch(report)
        if last:
            return PurgeOutcome(True, rows, batches, position, longest)
    return PurgeOutcome(False, rows, batches, position, longest)


async def _batch_with_retries(
    engine: AsyncEngine,
    prepared: PreparedPurge,
    statement: Delete | Update,
    where: ColumnElement[bool],
    cursor: Sequence[Any] | None,
    window: int,
    limits: BatchLimits,
) -> tuple[BatchReport, bool]:
    for attempt in range(1, MAX_ATTEMPTS_PER_BATCH + 1):
        try:
            if prepared.rows_per_block is not None:
                return await _block_batch(engine, prepared, statement, cursor, window, limits)
            return await _one_batch(engine, prepared, statement, where, cursor, window, limits)
        except DBAPIError as exc:
            kind = _timeout_kind(exc)
            if kind is None:
                raise
            if attempt == MAX_ATTEMPTS_PER_BATCH:
                message = f"{kind} timeout {attempt} times in a row on table '{prepared.policy.table}'"
                raise PurgeStalled(message) from exc
            if kind == "statement":
                window = max(1, window // 2)
            await asyncio.sleep(limits.retry_pause_seconds * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def json_cursor(values: Sequence[Any]) -> list[Any]:
    """A keyset position as JSON-safe values (dates, times and UUIDs as strings)."""
    return [v if isinstance(v, bool | int | float | str) or v is None else str(v) for v in values]


def restore_cursor(prepared: PreparedPurge, values: Sequence[Any] | None) -> list[Any] | None:
    """A persisted keyset position back in the key columns' Python types."""
    if values is None:
        return None
    if prepared.rows_per_block is not None:
        return [int(values[0])]
    restored: list[Any] = []
    for key_column, value in zip(prepared.key, values, strict=True):
        try:
            python_type = key_column.type.python_type
        except NotImplementedError:
            python_type = object
        if isinstance(value, str) and python_type in (date, datetime):
            restored.append(python_type.fromisoformat(value))
        elif isinstance(value, str) and python_type is uuid.UUID:
            restored.append(uuid.UUID(value))
        else:
            restored.append(value)
    return restored
