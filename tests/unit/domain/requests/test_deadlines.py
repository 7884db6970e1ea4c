"""Deadline arithmetic: one calendar month, clamped; extensions before the due date, two months at most."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.domain.requests.deadlines import add_months, check_extension, due_date
from app.lib.errors import Conflict, ValidationFailed


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("received", "due"),
    [
        (utc(2026, 1, 31, 14, 5), utc(2026, 2, 28, 14, 5)),
        (utc(2028, 1, 31), utc(2028, 2, 29)),  # leap year
        (utc(2026, 3, 31), utc(2026, 4, 30)),
        (utc(2026, 12, 15), utc(2027, 1, 15)),
        (utc(2026, 2, 28), utc(2026, 3, 28)),
    ],
)
def test_due_date_is_one_calendar_month_clamped(received: datetime, due: datetime) -> None:
    assert due_date(received) == due


def test_add_months_crosses_years_and_clamps() -> None:
    assert add_months(utc(2026, 11, 30), 3) == utc(2027, 2, 28)
    assert add_months(utc(2026, 2, 28), 2) == utc(2026, 4, 28)


def test_extension_up_to_two_months_before_the_due_date() -> None:
    due = utc(2026, 2, 28)
    check_extension(due_at=due, until=utc(2026, 4, 28), now=utc(2026, 2, 1))
    with pytest.raises(ValidationFailed):
        check_extension(due_at=due, until=utc(2026, 4, 28, 0, 0, 1), now=utc(2026, 2, 1))
    with pytest.raises(ValidationFailed):
        check_extension(due_at=due, until=due, now=utc(2026, 2, 1))


def test_extension_refused_once_the_due_date_has_passed() -> None:
    with pytest.raises(Conflict):
        check_extension(due_at=utc(2026, 2, 28), until=utc(2026, 3, 28), now=utc(2026, 2, 28))
