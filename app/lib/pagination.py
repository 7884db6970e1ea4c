"""Cursor pagination: opaque, URL-safe cursors over a keyset, and a bounded page size."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

import msgspec

from app.lib.errors import ValidationFailed, field_error

__all__ = (
    "DEFAULT_PAGE_SIZE",
    "clamp_limit",
    "decode_cursor",
    "decode_time_cursor",
    "encode_cursor",
    "encode_time_cursor",
)

DEFAULT_PAGE_SIZE = 50


def encode_cursor(*key: Any) -> str:
    """Encode the sort key of the last item of a page (e.g. ``seq`` or ``(created_at, id)``)."""
    return base64.urlsafe_b64encode(msgspec.json.encode(list(key))).decode("ascii").rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    """Decode a cursor produced by :func:`encode_cursor`; a forged or stale one is a 422."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = msgspec.json.decode(raw, type=list[Any])
    except (ValueError, msgspec.DecodeError) as exc:
        raise _malformed() from exc
    if len(key) != arity:
        raise _malformed()
    return key


def decode_time_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """Decode a ``(time, id)`` cursor (lists ordered by a timestamp, ties broken by id)."""
    key = decode_cursor(cursor, 2)
    if key is None:
        return None
    try:
        return datetime.fromisoformat(str(key[0])), uuid.UUID(str(key[1]))
    except ValueError as exc:
        raise _malformed() from exc


def encode_time_cursor(last: tuple[datetime, uuid.UUID] | None) -> str | None:
    """The cursor after ``(time, id)`` of a page's last item; None at the end of the list."""
    return encode_cursor(last[0].isoformat(), str(last[1])) if last else None


def _malformed() -> ValidationFailed:
    return ValidationFailed("malformed cursor", [field_error("query.cursor", "malformed")])


def clamp_limit(limit: int | None, max_page_size: int) -> int:
    """A page size between 1 and the configured maximum (422 outside)."""
    if limit is None:
        return min(DEFAULT_PAGE_SIZE, max_page_size)
    if limit < 1 or limit > max_page_size:
        raise ValidationFailed(
            f"limit must be between 1 and {max_page_size}",
            [field_error("query.limit", f"must be between 1 and {max_page_size}")],
        )
    return limit
