"""The SQL of an erasure: the per-table statements, the keyset bounds and the plan's rendering.

Every statement is built with SQLAlchemy Core against reflected tables; the subject's rows come
from :func:`app.engine.subjects.path_condition`, whose :class:`~app.engine.subjects.Binds` bind the
subject key for execution and render ``:subject_key_0`` for display, so a plan never shows the
subject's identifier.
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
    case,
    cast,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy import types as sqltypes
from sqlalchemy.exc import CompileError

from app.engine.surrogate_digests import BindFactory, HashKey, plain_bind
from app.engine.surrogates import SurrogateContext, resolved_surrogate, surrogate_expression, surrogate_label
from app.manifest.model import ColumnSpec, Surrogate
from app.manifest.schema import TableInfo

__all__ = (
    "ColumnChange",
    "LinkChanges",
    "anonymize_statement",
    "column_change",
    "count_statement",
    "delete_statement",
    "display_sql",
    "value_differs",
)


@dataclass(frozen=True)
class ColumnChange:
    """One column an UPDATE changes: to NULL (strategy delete) or to its surrogate expression."""

    column: str
    value: ColumnElement[Any]
    kind: str
    """``null`` or the surrogate name."""


def column_change(
    table: Table,
    info: TableInfo,
    column: str,
    spec: ColumnSpec,
    dialect: str,
    *,
    hash_key: HashKey | None,
    secret_bind: BindFactory = plain_bind,
) -> ColumnChange:
    """What erasure writes into ``column`` of ``table``: NULL (strategy delete) or its surrogate,
    resolved by the rules validation applies (the plan, execution and the CHECK proof all ask here).

    Raises:
        SurrogateError: the surrogate does not fit the column's type or constraints.
    """
    ctx = SurrogateContext(
        table,
        column,
        tuple(info.primary_key),
        dialect,
        unique=info.column_is_unique(column),
        hash_key=hash_key,
        secret_bind=secret_bind,
        table_info=info,
    )
    wanted = Surrogate(kind="null") if spec.strategy == "delete" else spec.surrogate_spec
    surrogate = resolved_surrogate(ctx, wanted)
    return ColumnChange(column, surrogate_expression(ctx, surrogate), surrogate_label(surrogate))


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


def display_sql(statement: Any, dialect: Any) -> str:
    """The statement as the plan shows it: literals inline, the subject key as placeholders."""
    try:
        compiled = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    except (CompileError, NotImplementedError):
        compiled = statement.compile(dialect=dialect)
    return " ".join(str(compiled).split())
