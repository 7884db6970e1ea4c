"""Rectified values are checked against the reflected column type before anything is written."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Boolean, Column, Date, DateTime, Integer, LargeBinary, Numeric, String

from app.engine.rectify import InvalidValue, check_value


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        (Column("a", String(5)), "abcde", "abcde"),
        (Column("a", Integer), 7, 7),
        (Column("a", Boolean), True, True),
        (Column("a", Date), "2026-02-28", date(2026, 2, 28)),
        (Column("a", DateTime), "2026-02-28T10:00:00", datetime(2026, 2, 28, 10)),  # noqa: DTZ001
        (Column("a", Numeric(6, 2)), "1234.5", Decimal("1234.5")),
        (Column("a", String(5), nullable=True), None, None),
    ],
)
def test_values_that_fit(column: Column[Any], value: Any, expected: Any) -> None:
    assert check_value(column, value) == expected


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (Column("a", String(5)), "abcdef", "longer than 5"),
        (Column("a", String(5)), 5, "expects text"),
        (Column("a", Integer), True, "expects an integer"),
        (Column("a", Integer), "7", "expects an integer"),
        (Column("a", Boolean), 1, "true or false"),
        (Column("a", Date), "28/02/2026", "ISO 8601 date"),
        (Column("a", Numeric(4, 2)), 123.45, r"NUMERIC\(4, 2\)"),
        (Column("a", String(5), nullable=False), None, "cannot be null"),
        (Column("a", LargeBinary), "x", "cannot be rectified"),
    ],
)
def test_values_that_do_not_fit(column: Column[Any], value: Any, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        check_value(column, value)
