"""The service's one clock: timezone-aware UTC, so every lease, deadline and event compares alike."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ("utcnow",)


def utcnow() -> datetime:
    """Now, in UTC (aware). Use this rather than ``datetime.now``, so there is one clock to read."""
    return datetime.now(UTC)
