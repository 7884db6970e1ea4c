"""Integrity errors are named by constraint, table and column, never by the values drivers quote."""

from __future__ import annotations

import pytest

from app.engine.integrity import integrity_detail


class _DriverError(Exception):
    """A driver exception as asyncmy and sqlite3 raise them: code and message in ``args``."""


@pytest.mark.parametrize(
    ("args", "described"),
    [
        (
            (4025, "CONSTRAINT `ck_people_handle` failed for `shop`.`people`"),
            "CHECK constraint 'ck_people_handle' of table 'people'",
        ),
        (
            (1062, "Duplicate entry 'ada@example.org' for key 'uq_users_email'"),
            "UNIQUE constraint 'uq_users_email' of table 'users'",
        ),
        ((1048, "Column 'email' cannot be null"), "NOT NULL constraint of table 'users' (column 'email')"),
        (
            ("CHECK constraint failed: ck_people_handle",),
            "CHECK constraint 'ck_people_handle' of table 'users'",
        ),
        (("UNIQUE constraint failed: people.email",), "UNIQUE constraint of table 'people' (column 'email')"),
    ],
)
def test_driver_messages_name_the_constraint_not_the_value(args: tuple[object, ...], described: str) -> None:
    error = _DriverError(*args)
    text = integrity_detail(error).describe("users")
    assert text == described
    assert "ada@example.org" not in text
