"""Scheduling windows follow the policy's ISO 8601 interval, calendar-aware."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.domain.retention.services import next_window


@pytest.mark.parametrize(
    ("schedule", "now", "expected"),
    [
        ("PT1H", datetime(2026, 1, 1, 23, 30, tzinfo=UTC), datetime(2026, 1, 2, 0, 30, tzinfo=UTC)),
        ("P1D", datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
        ("P1M", datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 2, 28, tzinfo=UTC)),
        ("P1Y", datetime(2028, 2, 29, tzinfo=UTC), datetime(2029, 2, 28, tzinfo=UTC)),
    ],
)
def test_next_window(schedule: str, now: datetime, expected: datetime) -> None:
    assert next_window(schedule, now) == expected
