"""Name the constraint and table behind a target's integrity error, never the values it quotes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError

__all__ = ("IntegrityDetail", "constraint_refusal", "integrity_detail")


@dataclass(frozen=True)
class IntegrityDetail:
    """What a target refused: the kind of constraint and, where the driver says, its name,
    table and column (identifiers only: drivers quote offending values, which are dropped)."""

    kind: str
    """``check``, ``unique``, ``not_null``, ``foreign_key`` or ``constraint``."""
    constraint: str | None = None
    table: str | None = None
    column: str | None = None

    def describe(self, table: str) -> str:
        """A phrase naming the constraint and the table (the statement's table when the driver
        does not say): ``CHECK constraint 'ck_handle' of table 'users'``."""
        what = _LABELS.get(self.kind, "")
        name = f" '{self.constraint}'" if self.constraint else ""
        column = f" (column '{self.column}')" if self.column else ""
        return f"{what} constraint{name} of table '{self.table or table}'{column}".strip()


_LABELS = {"check": "CHECK", "unique": "UNIQUE", "not_null": "NOT NULL", "foreign_key": "FOREIGN KEY"}
_PG_KINDS = {"23514": "check", "23505": "unique", "23502": "not_null", "23503": "foreign_key"}
_Q = "[`'\"]"
_NAME = "[^`'\". ]+"
_MYSQL = (
    (
        re.compile(
            rf"CONSTRAINT {_Q}?(?P<constraint>{_NAME}){_Q}? failed for "
            rf"{_Q}?{_NAME}{_Q}?\.{_Q}?(?P<table>{_NAME})"
        ),
        "check",
    ),
    (
        re.compile(rf"Duplicate entry .* for key {_Q}(?:(?P<table>{_NAME})\.)?(?P<constraint>{_NAME}){_Q}"),
        "unique",
    ),
    (re.compile(rf"Column {_Q}(?P<column>{_NAME}){_Q} cannot be null"), "not_null"),
    (
        re.compile(
            rf"foreign key constraint fails \({_Q}{_NAME}{_Q}\.{_Q}(?P<table>{_NAME}){_Q}, "
            rf"CONSTRAINT {_Q}(?P<constraint>{_NAME}){_Q}"
        ),
        "foreign_key",
    ),
)
_SQLITE = (
    (re.compile(r"CHECK constraint failed: (?P<constraint>.+)$"), "check"),
    (re.compile(r"UNIQUE constraint failed: (?P<table>[^.\s]+)\.(?P<column>[^,\s]+)"), "unique"),
    (re.compile(r"NOT NULL constraint failed: (?P<table>[^.\s]+)\.(?P<column>\S+)"), "not_null"),
    (re.compile(r"FOREIGN KEY constraint failed"), "foreign_key"),
)


_MYSQL_CHECK_ERRORS = frozenset({4025, 3819})
"""MariaDB and MySQL report a failed CHECK as an operational error, not an integrity error."""


def constraint_refusal(error: DBAPIError) -> IntegrityDetail | None:
    """The constraint a driver error reports, or None when the error is not a constraint's."""
    if isinstance(error, IntegrityError):
        return integrity_detail(error)
    args = getattr(error.orig, "args", ())
    if args and args[0] in _MYSQL_CHECK_ERRORS:
        return integrity_detail(error)
    return None


def integrity_detail(error: BaseException) -> IntegrityDetail:
    """The constraint behind an ``IntegrityError`` of asyncpg, asyncmy (MariaDB/MySQL) or SQLite."""
    orig: Any = getattr(error, "orig", error)
    cause: Any = getattr(orig, "__cause__", None)
    if hasattr(cause, "constraint_name"):  # asyncpg carries the names as attributes
        return IntegrityDetail(
            _PG_KINDS.get(str(getattr(cause, "sqlstate", "")), "constraint"),
            getattr(cause, "constraint_name", None),
            getattr(cause, "table_name", None),
            getattr(cause, "column_name", None),
        )
    message = " ".join(str(a) for a in getattr(orig, "args", ()) if isinstance(a, str)) or str(orig)
    for pattern, kind in (*_MYSQL, *_SQLITE):
        found = pattern.search(message)
        if found is not None:
            return IntegrityDetail(kind, **{k: v for k, v in found.groupdict().items() if v})
    return IntegrityDetail("constraint")
