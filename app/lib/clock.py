"""The service's one clock: timezone-aware UTC, so every lease, deadline and event compares alike."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ("as_utc", "utcnow")


def utcnow() -> datetime:
    """Now, in UTC (aware). Use this rather than ``datetime.now``, so there is one clock to read."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` with UTC attached when it is naive (SQLite hands back naive times)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
