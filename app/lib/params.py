"""Parameters and headers shared by many operations, declared once with their real limits."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar.datastructures import ResponseHeader
from litestar.params import QueryParameter

from app.lib.errors import ValidationFailed, field_error

__all__ = ("DATE_TIME", "PageCursor", "PageLimit", "location", "parse_instant")

DATE_TIME = {"format": "date-time"}
"""``schema_extra`` of a timestamp query parameter taken as text and read by :func:`parse_instant`."""

PageLimit = Annotated[
    int | None,
    QueryParameter(
        ge=1,
        description="Page size: 1 to LETHE_MAX_PAGE_SIZE (200 unless configured); 50 when omitted.",
    ),
]
"""The page size of a list; the upper bound is the configured maximum (set in the served spec)."""

PageCursor = Annotated[
    str | None,
    QueryParameter(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="`next_cursor` of the previous page; omit for the first page.",
    ),
]
"""An opaque cursor as Lethe returns it (URL-safe base64 without padding)."""


def parse_instant(value: str | None, field: str) -> datetime | None:
    """An RFC 3339 timestamp with an offset; numbers and naive times are refused (422).

    Query parameters are taken as text so that a bare number is not silently read as a Unix time.
    """
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or "T" not in value.upper() or moment.tzinfo is None:
        raise ValidationFailed(
            f"{field} must be an RFC 3339 date-time with an offset",
            [field_error(field, "an RFC 3339 date-time with an offset, e.g. 2026-05-01T12:00:00Z")],
        )
    return moment


def location(template: str) -> ResponseHeader:
    """The ``Location`` header of a 201/202 answer, documented (the handler sets its value)."""
    return ResponseHeader(
        name="Location",
        description=f"Where the new resource can be followed: `{template}`.",
        documentation_only=True,
    )
