"""Turn a subject path of the manifest graph into a SQLAlchemy Core condition on a target table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, select, tuple_

from app.manifest.graph import SubjectPath

__all__ = ("columns_of", "key_condition", "subject_filter")


def columns_of(table: Any, names: Sequence[str]) -> ColumnElement[Any]:
    """One column, or a tuple of columns for a composite key (``(a, b) IN (SELECT ...)``)."""
    if len(names) == 1:
        column: ColumnElement[Any] = table.c[names[0]]
        return column
    return tuple_(*(table.c[n] for n in names))


def key_condition(table: Any, key_columns: Sequence[str], key: Sequence[Any]) -> ColumnElement[bool]:
    """``key_columns = key`` on ``table`` (all columns for a composite key)."""
    if len(key_columns) != len(key):
        raise ValueError(f"the subject key has {len(key_columns)} column(s), got {len(key)} value(s)")
    return and_(*(table.c[c] == v for c, v in zip(key_columns, key, strict=True)))


def subject_filter(
    path: SubjectPath, tables: Mapping[str, Table], subject_key: Sequence[str], key: Sequence[Any]
) -> ColumnElement[bool]:
    """The condition selecting the rows of ``path.table`` that belong to the subject ``key``.

    Each hop becomes ``(from_columns) IN (SELECT to_columns FROM to_table WHERE <next hop>)``,
    and the innermost ``WHERE`` is the subject key. Every subquery reads an alias of its table, so
    a self-referencing hop (``folders.parent_id -> folders.id``) never correlates with the outer
    statement. ``tables`` maps names to reflected :class:`~sqlalchemy.Table` objects; use the
    result in ``select(...).where(...)``, ``update(...).where(...)`` or ``delete(...).where(...)``.
    """
    if not path.steps:
        return key_condition(tables[path.table], subject_key, key)
    last = path.steps[-1].to_table
    inner_table = tables[last].alias()
    condition = key_condition(inner_table, subject_key, key)
    current_alias: Any = inner_table
    for step in reversed(path.steps):
        chosen = select(*(current_alias.c[c] for c in step.to_columns)).where(condition)
        outer: Any = tables[step.from_table] if step is path.steps[0] else tables[step.from_table].alias()
        condition = columns_of(outer, step.from_columns).in_(chosen)
        current_alias = outer
    return condition
