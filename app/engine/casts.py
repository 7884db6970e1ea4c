"""The SQL types of a hop's ``cast:`` and the cast ``from`` side of a hop, per dialect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    DateTime,
    Integer,
    Numeric,
    String,
    Text,
    Uuid,
    cast,
    tuple_,
)
from sqlalchemy.types import TypeEngine

from app.manifest.links import Step

__all__ = ("CAST_SQL_TYPES", "hop_source")

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
"""The SQL type of each manifest ``cast:`` name (every ``CastType``)."""


def hop_source(table: Any, step: Step) -> ColumnElement[Any]:
    """The ``from`` side of a hop on ``table``: its columns (a tuple for a composite key), each
    cast when the hop says ``cast:``."""
    columns: list[ColumnElement[Any]] = [table.c[name] for name in step.from_columns]
    if step.cast is not None:
        columns = [cast(column, CAST_SQL_TYPES[step.cast]) for column in columns]
    return columns[0] if len(columns) == 1 else tuple_(*columns)
