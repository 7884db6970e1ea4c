"""Legal deadlines of a request: one calendar month, extendable by up to two more (Art. 12(3))."""

from __future__ import annotations

import calendar
from datetime import datetime

from app.lib.errors import Conflict, ValidationFailed

__all__ = ("MAX_EXTENSION_MONTHS", "add_months", "check_extension", "due_date")

MAX_EXTENSION_MONTHS = 2


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months, clamped to the last day of the target month.

    31 January + 1 month is 28 February (29 in a leap year), never 3 March.
    """
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def due_date(received_at: datetime) -> datetime:
    """The first deadline: one calendar month after receipt."""
    return add_months(received_at, 1)


def check_extension(*, due_at: datetime, until: datetime, now: datetime) -> None:
    """Refuse an extension made after the first due date or reaching beyond two more months.

    Raises:
        Conflict: the first due date has passed (an extension must be decided before it).
        ValidationFailed: ``until`` is not after the due date or is more than two months beyond it.
    """
    if now >= due_at:
        raise Conflict("an extension must be made before the first due date, which has passed")
    limit = add_months(due_at, MAX_EXTENSION_MONTHS)
    if until <= due_at or until > limit:
        raise ValidationFailed(
            "an extension must end after the due date and at most two months beyond it",
            [
                {
                    "field": "body.until",
                    "message": f"must be after {due_at.isoformat()} and at most {limit.isoformat()}",
                }
            ],
        )
