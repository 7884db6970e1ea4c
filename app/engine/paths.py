"""Turn a subject path of the manifest graph into a SQLAlchemy Core condition on a target table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    DateTime,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    Uuid,
    and_,
    cast,
    select,
    tuple_,
)
from sqlalchemy.types import TypeEngine

from app.manifest.graph import Step, SubjectPath
from app.manifest.model import SubjectSpec

__all__ = ("columns_of", "hop_source", "identity_condition", "key_condition", "subject_filter")

_TEXT_ELSEWHERE = ("mysql", "mariadb", "sqlite")
CAST_SQL_TYPES: dict[str, TypeEngine[Any]] = {
    "text": Text(),
    "varchar": String(),
    "integer": Integer(),
    "bigint": BigInteger(),
    "numeric": Numeric(),
    # a native uuid on PostgreSQL; MariaDB/MySQL and SQLite compare uuids as text
    "uuid": Uuid(as_uuid=False).with_variant(String(), *_TEXT_ELSEWHERE),
    "date": Date(),
    "timestamp": DateTime(),
}
"""The SQL type of each manifest ``cast:`` name (every ``CastType``), per dialect."""


def columns_of(table: Any, names: Sequence[str]) -> ColumnElement[Any]:
    """One column, or a tuple of columns for a composite key (``(a, b) IN (SELECT ...)``)."""
    if len(names) == 1:
        column: ColumnElement[Any] = table.c[names[0]]
        return column
    return tuple_(*(table.c[n] for n in names))


def hop_source(table: Any, step: Step) -> ColumnElement[Any]:
    """The ``from`` side of a hop on ``table``: its columns, each cast when the hop says ``cast:``."""
    if step.cast is None:
        return columns_of(table, step.from_columns)
    target = CAST_SQL_TYPES[step.cast]
    casted = [cast(table.c[name], target) for name in step.from_columns]
    return casted[0] if len(casted) == 1 else tuple_(*casted)


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
        condition = hop_source(outer, step).in_(chosen)
        current_alias = outer
    return condition


def identity_condition(
    subject: SubjectSpec, table: Table, identity: str, value: Any, tenant: Any = None
) -> ColumnElement[bool]:
    """The condition finding the subject row by one of the manifest's identities.

    ``select(*subject key columns).where(identity_condition(...))`` gives the subject key that
    :func:`subject_filter` needs.

    Raises:
        KeyError: the manifest declares no identity called ``identity``.
        ValueError: the identity is tenant-scoped and no ``tenant`` was given.
    """
    spec = subject.identity(identity)
    condition: ColumnElement[bool] = table.c[spec.column] == value
    if spec.tenant_column is None:
        return condition
    if tenant is None:
        raise ValueError(f"identity '{identity}' is scoped by tenant: a tenant is required")
    return and_(condition, table.c[spec.tenant_column] == tenant)
