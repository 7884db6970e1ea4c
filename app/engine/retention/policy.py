"""Retention policies: what one policy asks of one table, checked without a database."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Date, DateTime

from app.lib.clock import utcnow
from app.lib.errors import ValidationFailed, field_error
from app.manifest.durations import parse_duration
from app.manifest.model import Surrogate

__all__ = (
    "ACTIONS",
    "FILTER_OPERATORS",
    "PolicyFilter",
    "PurgePolicy",
    "SurrogateRule",
    "bound_cutoff",
    "check_policy_shape",
    "compute_cutoff",
    "filter_clause",
    "refuse",
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


def refuse(policy: PurgePolicy, field_name: str, message: str) -> ValidationFailed:
    """The 422 refusing ``policy``, naming the offending field."""
    detail = f"retention policy on {policy.system}.{policy.table}: {message}"
    return ValidationFailed(detail, [field_error(field_name, message)])


def compute_cutoff(older_than: str, now: datetime | None = None) -> datetime:
    """Rows whose age column is before this instant are due (calendar-aware: P1M, P7Y).

    Computed once per run and stored with it, so a resumed run purges exactly the rows an
    uninterrupted one would have.
    """
    moment = now or utcnow()
    return parse_duration(older_than).before(moment)


def check_policy_shape(policy: PurgePolicy) -> None:
    """Checks that need no database: age column present, action, operators, values, batch size.

    Raises:
        ValidationFailed: naming the offending field.
    """
    if not policy.age_column:
        raise refuse(policy, "age_column", "an age column is required (rows are purged by age)")
    try:
        parse_duration(policy.older_than)
    except ValueError as exc:
        raise refuse(policy, "older_than", str(exc)) from exc
    if policy.action not in ACTIONS:
        raise refuse(policy, "action", f"unknown action '{policy.action}' (one of {', '.join(ACTIONS)})")
    if policy.action == "soft_delete" and not policy.soft_delete_column:
        raise refuse(policy, "soft_delete_column", "action soft_delete needs soft_delete_column")
    if not 1 <= policy.batch_size <= 100_000:
        raise refuse(policy, "batch_size", "batch_size must be between 1 and 100000")
    for index, condition in enumerate(policy.filters):
        _check_filter_shape(policy, index, condition)


def _check_filter_shape(policy: PurgePolicy, index: int, condition: PolicyFilter) -> None:
    where = f"filters[{index}]"
    if condition.op not in FILTER_OPERATORS:
        raise refuse(
            policy, f"{where}.op", f"unknown operator '{condition.op}' (one of {' '.join(FILTER_OPERATORS)})"
        )
    if condition.op in _VALUELESS:
        if condition.value is not None:
            raise refuse(policy, f"{where}.value", f"operator {condition.op} takes no value")
    elif condition.op in _LIST_OPERATORS:
        if not isinstance(condition.value, list | tuple) or not condition.value:
            raise refuse(policy, f"{where}.value", f"operator {condition.op} needs a non-empty list")
    elif condition.value is None or isinstance(condition.value, list | tuple | dict):
        raise refuse(policy, f"{where}.value", f"operator {condition.op} needs one scalar value")


def bound_cutoff(column: ColumnElement[Any], moment: datetime) -> Any:
    """The instant as the column's type expects it (UTC; naive for columns without a zone)."""
    column_type = column.type
    if isinstance(column_type, DateTime):
        return moment if column_type.timezone else moment.astimezone(UTC).replace(tzinfo=None)
    if isinstance(column_type, Date):
        return moment.astimezone(UTC).date()
    return moment


def filter_clause(column: ColumnElement[Any], condition: PolicyFilter) -> ColumnElement[bool]:
    """One filter as SQL (its value bound)."""
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
