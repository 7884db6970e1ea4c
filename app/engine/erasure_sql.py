"""The SQL of an erasure: subject conditions from hop chains, and the per-table statements.

Every statement is built with SQLAlchemy Core against reflected tables. The subject key (and the
key of the ``hash`` surrogate) enter through a :class:`Binds` object: executable statements bind
the values, displayed statements (the plan) render ``:subject_key_0`` instead, so a plan never
shows the subject's identifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    Select,
    String,
    Table,
    Update,
    and_,
    bindparam,
    case,
    cast,
    delete,
    false,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy import types as sqltypes
from sqlalchemy.exc import CompileError

from app.engine.surrogates import placeholder_bind
from app.manifest.graph import SubjectPath

__all__ = (
    "Binds",
    "ColumnChange",
    "LinkChanges",
    "anonymize_statement",
    "count_statement",
    "delete_statement",
    "display_sql",
    "in_rows",
    "keyset_bounds",
    "subject_condition",
    "value_differs",
)


@dataclass(frozen=True)
class Binds:
    """How the subject key reaches SQL: bound values (execution) or named placeholders (plans)."""

    key_values: tuple[Any, ...] | None

    @property
    def display(self) -> bool:
        """Whether statements are built for display only."""
        return self.key_values is None

    def key(self, index: int, column: Any) -> ColumnElement[Any]:
        """The ``index``-th subject key value, typed like ``column``."""
        name = f"subject_key_{index}"
        if self.key_values is None:
            return literal_column(f":{name}")
        return bindparam(name, self.key_values[index], type_=column.type)

    def secret(self, name: str, value: Any, type_: Any) -> ColumnElement[Any]:
        """A secret bind (the ``hash`` surrogate's key pads)."""
        if self.key_values is None:
            return placeholder_bind(name, value, type_)
        return bindparam(name, value, type_=type_)


def _columns(table: Any, names: Sequence[str]) -> ColumnElement[Any]:
    if len(names) == 1:
        column: ColumnElement[Any] = table.c[names[0]]
        return column
    return tuple_(*(table.c[n] for n in names))


def subject_condition(
    path: SubjectPath,
    tables: dict[str, Table],
    subject_key: tuple[str, ...],
    binds: Binds,
    *,
    target: Any = None,
    dialect: str = "postgresql",
) -> ColumnElement[bool]:
    """The rows of ``path.table`` (or of ``target``, an alias of it) that belong to the subject.

    Each hop is ``(from) IN (SELECT to FROM <alias> WHERE <next hop>)``; the last hop into the
    subject table compares with the key directly (``orders.user_id = :subject_key_0``), exactly as
    hand-written SQL would, and also matches rows whose subject row is already gone. On MariaDB/
    MySQL a subquery reading the table being changed is wrapped in a ``DISTINCT`` derived table
    (MySQL refuses to read the target of an UPDATE/DELETE in a plain subquery).
    """
    outer = tables[path.table] if target is None else target
    steps = path.steps
    if not steps:
        return _key_equals(outer, subject_key, subject_key, binds)
    levels: list[Any] = [outer] + [tables[s.to_table].alias() for s in steps]
    last = steps[-1]
    if set(last.to_columns) == set(subject_key):
        mapping = dict(zip(last.to_columns, last.from_columns, strict=True))
        condition = _key_equals(levels[-2], subject_key, [mapping[k] for k in subject_key], binds)
        inner_steps = steps[:-1]
    else:
        condition = _key_equals(levels[-1], subject_key, subject_key, binds)
        inner_steps = steps
    for index in range(len(inner_steps) - 1, -1, -1):
        step = inner_steps[index]
        source = levels[index + 1]
        chosen: Select[Any] = select(*(source.c[c] for c in step.to_columns)).where(condition)
        if index == 0 and dialect == "mysql" and path.table in path.tables:
            chosen = _derived(chosen)
        condition = _columns(levels[index], step.from_columns).in_(chosen)
    return condition


def _key_equals(
    table: Any, subject_key: Sequence[str], columns: Sequence[str], binds: Binds
) -> ColumnElement[bool]:
    return and_(
        *(
            table.c[column] == binds.key(i, table.c[column])
            for i, (_, column) in enumerate(zip(subject_key, columns, strict=True))
        )
    )


def _derived(chosen: Select[Any]) -> Select[Any]:
    """``SELECT DISTINCT ... FROM (subquery)``: MySQL materialises it (no error 1093)."""
    sub = chosen.subquery()
    return select(*sub.c).distinct()


def in_rows(table: Any, key: Sequence[str], rows: Select[Any], *, dialect: str) -> ColumnElement[bool]:
    """``(key) IN (rows)``, wrapped on MySQL where ``rows`` may read ``table`` itself."""
    if dialect == "mysql":
        rows = _derived(rows)
    return _columns(table, key).in_(rows)


@dataclass(frozen=True)
class ColumnChange:
    """One column an UPDATE changes: to NULL (strategy delete) or to its surrogate expression."""

    column: str
    value: ColumnElement[Any]
    kind: str
    """``null`` or the surrogate name."""


def value_differs(column: Any, change: ColumnChange) -> ColumnElement[bool]:
    """Whether ``column`` does not hold ``change``'s value yet (NULL-safe; JSON compared as text,
    PostgreSQL's ``json`` having no equality)."""
    differs: ColumnElement[bool]
    if change.kind == "null":
        differs = column.is_not(None)
    elif isinstance(column.type, sqltypes.JSON):
        differs = cast(column, String).is_distinct_from(cast(change.value, String))
    else:
        differs = column.is_distinct_from(change.value)
    return differs


def _pending(table: Table, link: LinkChanges) -> ColumnElement[bool]:
    """The link's rows where some column still differs from its surrogate: re-applying an
    erasure (a replay, a second request) matches and rewrites nothing."""
    return and_(link.condition, or_(*(value_differs(table.c[c.column], c) for c in link.changes)))


@dataclass(frozen=True)
class LinkChanges:
    """For one link of a table, the rows it selects and the columns it changes on them."""

    condition: ColumnElement[bool]
    changes: tuple[ColumnChange, ...]


def count_statement(table: Table, condition: ColumnElement[bool]) -> Select[Any]:
    """``SELECT count(*) FROM table WHERE condition``."""
    return select(func.count()).select_from(table).where(condition)


def delete_statement(table: Table, condition: ColumnElement[bool]) -> Delete:
    """``DELETE FROM table WHERE condition``."""
    return delete(table).where(condition)


def anonymize_statement(table: Table, links: Sequence[LinkChanges]) -> Update | None:
    """One UPDATE for every link of ``table``.

    With one link it is ``UPDATE t SET col = surrogate WHERE <link>``. With several (a message
    with a sender and a recipient) each column changes only on rows where a link that owns it
    matches: ``SET sender_name = CASE WHEN <sender link> THEN <surrogate> ELSE sender_name END``,
    so the other person's side of a shared row is untouched.
    """
    links = [link for link in links if link.changes]
    if not links:
        return None
    if len(links) == 1:
        only = links[0]
        values = {c.column: c.value for c in only.changes}
        return update(table).where(_pending(table, only)).values(values)
    owners: dict[str, list[tuple[ColumnElement[bool], ColumnElement[Any]]]] = {}
    for link in links:
        for change in link.changes:
            owners.setdefault(change.column, []).append((link.condition, change.value))
    values = {
        column: case(*whens, else_=table.c[column]) if whens else table.c[column]
        for column, whens in owners.items()
    }
    return update(table).where(or_(*(_pending(table, link) for link in links))).values(values)


def keyset_bounds(
    table: Table, key: str, condition: ColumnElement[bool], after: Any, size: int
) -> Select[Any]:
    """The largest key of the next batch: ``max(key)`` of the next ``size`` subject rows."""
    chosen = select(table.c[key].label("k")).where(condition)
    if after is not None:
        chosen = chosen.where(table.c[key] > after)
    sub = chosen.order_by(table.c[key]).limit(size).subquery()
    return select(func.max(sub.c.k))


def display_sql(statement: Any, dialect: Any) -> str:
    """The statement as the plan shows it: literals inline, the subject key as placeholders."""
    try:
        compiled = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    except (CompileError, NotImplementedError):
        compiled = statement.compile(dialect=dialect)
    return " ".join(str(compiled).split())


def null_value() -> ColumnElement[Any]:
    """NULL, for columns whose strategy is ``delete`` on a surviving row."""
    return null()


def constant_true() -> ColumnElement[bool]:
    """TRUE (a condition matching every row)."""
    return true()


def constant_false() -> ColumnElement[bool]:
    """FALSE (a condition matching no row)."""
    return false()
