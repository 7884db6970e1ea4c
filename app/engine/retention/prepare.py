"""A retention policy checked against the live table: reflection, refusals, the SET clause."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Date,
    DateTime,
    Delete,
    Table,
    Update,
    and_,
    cast,
    column,
    delete,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy import table as sa_table
from sqlalchemy.dialects.postgresql import REGCLASS
from sqlalchemy.engine import Connection
from sqlalchemy.exc import NoSuchTableError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.dialects import Dialect, dialect_of
from app.engine.keyset import Keyset
from app.engine.reflection import foreign_keys_into, reflect_tables
from app.engine.retention.policy import PurgePolicy, bound_cutoff, check_policy_shape, filter_clause, refuse
from app.engine.schema_info import table_info_of
from app.engine.surrogates import SurrogateContext, SurrogateError, hash_key_from_secret, surrogate_expression
from app.manifest.names import split_table

__all__ = ("PreparedPurge", "prepare_purge")

_SAFE_ON_DELETE = frozenset({"CASCADE", "SET NULL", "SET DEFAULT"})
DEFAULT_ROWS_PER_BLOCK = 60
MIN_BLOCKS_PER_BATCH = 4


@dataclass(frozen=True)
class PreparedPurge:
    """A policy checked against the live table: the reflected table, its key, its SET clause."""

    policy: PurgePolicy
    table: Table
    key: tuple[Column[Any], ...]
    assignments: Mapping[str, ColumnElement[Any]]
    dialect: Dialect
    rows_per_block: int | None = None
    """Set on PostgreSQL heap tables: batches then walk physical block ranges (see ``_block_batch``)."""

    @property
    def keyset(self) -> Keyset:
        """The primary key batches walk."""
        return Keyset(self.key)

    def condition(self, cutoff: datetime) -> ColumnElement[bool]:
        """Rows due for this run: older than the cut-off, matching the filters, not yet purged."""
        age = self.table.c[self.policy.age_column or ""]
        parts: list[ColumnElement[bool]] = [age < bound_cutoff(age, cutoff)]
        parts.extend(filter_clause(self.table.c[f.column], f) for f in self.policy.filters)
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
            values = {column.name: bound_cutoff(column, purge_at)}
        return update(self.table).where(where).values(dict(values))


def _reflect(
    sync_connection: Connection, name: str, schemas: Sequence[str]
) -> tuple[Table, list[tuple[str, dict[str, Any]]]]:
    """The table, and every foreign key (of any table of the target's schemas) that points at it."""
    tables, located = reflect_tables(sync_connection, [*schemas, *_schema_of(name)], [name])
    if name not in tables:
        raise NoSuchTableError(name)
    table = tables[name]
    incoming = foreign_keys_into(sync_connection, located, name)
    if dialect_of(sync_connection).misses_inline_on_delete:
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
        raise refuse(policy, "table", f"table '{policy.table}' does not exist in the target") from exc
    _check_columns(policy, table)
    key = tuple(table.primary_key.columns)
    if not key:
        raise refuse(policy, "table", f"table '{policy.table}' has no primary key (keyset batches need one)")
    if policy.action == "delete":
        _check_incoming(policy, incoming)
    dialect = dialect_of(connection)
    anonymize = policy.action == "anonymize"
    assignments = _assignments(policy, table, key, dialect) if anonymize else {}
    return PreparedPurge(
        policy=policy,
        table=table,
        key=key,
        assignments=assignments,
        dialect=dialect,
        rows_per_block=await _heap_density(connection, table, policy.batch_size),
    )


async def _heap_density(connection: AsyncConnection, table: Table, batch_size: int) -> int | None:
    """Rows per 8 kB block of an ordinary PostgreSQL (>= 14) table; None elsewhere.

    On such tables a batch is a range of physical blocks (``ctid >= '(a,0)' AND ctid < '(b,0)'``,
    a TID range scan): the same sequential access as one big ``DELETE``, so a purge costs about
    what the single statement costs, while each batch still locks only the rows of its range.
    Partitioned tables, views, older servers, and batch sizes smaller than a few blocks' worth
    of rows (a batch could not honour them) use primary-key ranges.
    """
    if not dialect_of(connection).tid_range_scans:
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


def _check_columns(policy: PurgePolicy, table: Table) -> None:
    def known(field_name: str, column: str) -> Column[Any]:
        if column not in table.c:
            raise refuse(policy, field_name, f"column '{column}' does not exist in table '{policy.table}'")
        return table.c[column]

    age = known("age_column", policy.age_column or "")
    if not isinstance(age.type, Date | DateTime):
        raise refuse(
            policy, "age_column", f"age column '{age.name}' is {age.type}, not a date or timestamp column"
        )
    for index, condition in enumerate(policy.filters):
        known(f"filters[{index}].column", condition.column)
    if policy.action == "soft_delete":
        column = known("soft_delete_column", policy.soft_delete_column or "")
        if not isinstance(column.type, Date | DateTime):
            raise refuse(
                policy, "soft_delete_column", f"column '{column.name}' must be a date or timestamp column"
            )
        if not column.nullable:
            raise refuse(
                policy, "soft_delete_column", f"column '{column.name}' must be nullable (NULL = live)"
            )
    for name in policy.surrogates:
        known(f"surrogates.{name}", name)


def _check_incoming(policy: PurgePolicy, incoming: Sequence[tuple[str, dict[str, Any]]]) -> None:
    for referring, fk in incoming:
        on_delete = str((fk.get("options") or {}).get("ondelete") or "NO ACTION").upper()
        if on_delete not in _SAFE_ON_DELETE:
            columns = ", ".join(fk["constrained_columns"])
            raise refuse(
                policy,
                "action",
                f"cannot delete rows of '{policy.table}': {referring}({columns}) references it "
                f"with ON DELETE {on_delete}; use action anonymize or soft_delete, or add ON DELETE CASCADE",
            )


def _assignments(
    policy: PurgePolicy, table: Table, key: Sequence[Column[Any]], dialect: Dialect
) -> dict[str, ColumnElement[Any]]:
    """The SET clause of ``anonymize``: each column's surrogate, computed in SQL per row."""
    if not policy.surrogates:
        raise refuse(
            policy,
            "action",
            f"table '{policy.table}' has no personal columns in the manifest of "
            f"'{policy.system}' to anonymize",
        )
    protected = {c.name for c in key} | {policy.age_column}
    info = table_info_of(table)
    hash_key = hash_key_from_secret(policy.secret) if policy.secret else None
    values: dict[str, ColumnElement[Any]] = {}
    for name, rule in policy.surrogates.items():
        if name in protected:
            raise refuse(policy, f"surrogates.{name}", f"column '{name}' is the key or the age column")
        context = SurrogateContext(
            table=table,
            column=name,
            key_columns=tuple(c.name for c in key),
            dialect=dialect,
            unique=info.column_is_unique(name),
            hash_key=hash_key,
        )
        try:
            values[name] = surrogate_expression(context, rule.spec)
        except SurrogateError as exc:
            raise refuse(policy, f"surrogates.{name}", str(exc)) from exc
    return values
