"""The words of a manifest: strategies, surrogate kinds, cast types and constant values."""

from __future__ import annotations

from typing import Any, Literal, get_args

__all__ = (
    "CAST_TYPES",
    "CastType",
    "ColumnStrategy",
    "ConstantValue",
    "OutsideReference",
    "RowStrategy",
    "SurrogateKind",
)

ColumnStrategy = Literal["delete", "anonymize", "retain"]
"""What erasure does to one column of a surviving row.

``delete`` sets the column to NULL; ``anonymize`` writes the column's surrogate;
``retain`` keeps the value (a ``retention`` with legal basis and duration is then required).
"""

RowStrategy = Literal["delete", "anonymize", "retain"]
"""What erasure does to the subject's rows of a table.

``delete`` deletes the rows (column strategies are then irrelevant); ``anonymize`` keeps the rows
and applies each column's strategy; ``retain`` keeps the rows untouched except for columns whose
own strategy is ``delete`` or ``anonymize`` (a table-level ``retention`` is required).
"""

OutsideReference = Literal["fail", "set_null", "delete", "anonymize"]
"""What to do when a row about to be deleted is referenced from outside the subject's data.

``fail`` (default) stops the erasure with a clear error naming the foreign key; ``set_null``
nulls the referencing columns; ``delete`` deletes the referencing rows; ``anonymize`` keeps the
row of this table and anonymizes its columns instead of deleting it.
"""

SurrogateKind = Literal[
    "null",
    "constant",
    "unique",
    "email",
    "redacted",
    "hash",
    "zero",
    "epoch",
    "false",
    "uuid",
    "json",
    "array",
    "ip",
    "first",
    "binary",
]
"""Named surrogates of :mod:`app.engine.surrogates` (which computes them in SQL per dialect);
which column types each fits is decided by :mod:`app.manifest.surrogate_rules`."""

ConstantValue = str | int | float | bool | dict[str, Any] | list[Any] | None
"""A constant surrogate's value: any JSON value (structured values only for JSON and arrays)."""

CastType = Literal["text", "varchar", "integer", "bigint", "numeric", "uuid", "date", "timestamp"]
"""Types a hop may cast its ``from`` columns to (``cast: uuid`` for a text column holding uuids)."""
CAST_TYPES: tuple[str, ...] = get_args(CastType)
