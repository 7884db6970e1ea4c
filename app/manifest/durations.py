"""ISO 8601 durations (``P10Y``, ``P0D``, ``PT12H``) with calendar-aware subtraction."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from msgspec import Meta

__all__ = ("DURATION_PATTERN", "MAX_YEARS", "Duration", "IsoDuration", "parse_duration")

DURATION_PATTERN = (
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$"
)
_DURATION = re.compile(DURATION_PATTERN)
MAX_YEARS = 1000
"""Longest duration accepted: anything longer cannot be subtracted from today's date."""
_MAX_DAYS = MAX_YEARS * 366

IsoDuration = Annotated[
    str, Meta(pattern=DURATION_PATTERN, description="ISO 8601 duration, e.g. P10Y, P30D, PT12H")
]
"""A duration as written in a manifest; parse it with :func:`parse_duration`."""


@dataclass(frozen=True)
class Duration:
    """A parsed duration: calendar parts (years, months) and an exact part."""

    years: int = 0
    months: int = 0
    exact: timedelta = timedelta()

    def before(self, moment: datetime) -> datetime:
        """The instant this duration before ``moment`` (31 March minus P1M is 28/29 February).

        Retention uses it as the cut-off: rows whose age column is older than
        ``duration.before(now)`` are due.
        """
        total_months = moment.year * 12 + (moment.month - 1) - (self.years * 12 + self.months)
        year, month = divmod(total_months, 12)
        day = min(moment.day, calendar.monthrange(year, month + 1)[1])
        return moment.replace(year=year, month=month + 1, day=day) - self.exact

    def after(self, moment: datetime) -> datetime:
        """The instant this duration after ``moment`` (31 January plus P1M is 28/29 February)."""
        total_months = moment.year * 12 + (moment.month - 1) + self.years * 12 + self.months
        year, month = divmod(total_months, 12)
        day = min(moment.day, calendar.monthrange(year, month + 1)[1])
        return moment.replace(year=year, month=month + 1, day=day) + self.exact


def parse_duration(text: str) -> Duration:
    """Parse an ISO 8601 duration (``PnYnMnWnDTnHnMnS``, no fractions).

    Raises:
        ValueError: ``text`` is not such a duration.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    if any(len(g) > 12 for g in match.groups() if g):
        raise ValueError(f"longer than {MAX_YEARS} years")
    years, months, weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    span_days = (
        years * 366 + months * 31 + weeks * 7 + days + (hours * 3600 + minutes * 60 + seconds) // 86_400
    )
    if span_days > _MAX_DAYS:
        raise ValueError(f"longer than {MAX_YEARS} years")
    exact = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    return Duration(years=years, months=months, exact=exact)
