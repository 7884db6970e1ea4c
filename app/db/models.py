"""Service-store tables shared by every domain: idempotency records, rate-limit windows."""

from __future__ import annotations

from datetime import datetime

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ("IdempotencyRecord", "RateLimitWindow")


class IdempotencyRecord(DefaultBase):
    """One ``Idempotency-Key`` of one calling client, with the response it produced.

    The row is inserted as *pending* first in the transaction of the work and gets its response at
    the end of it, so a concurrent duplicate waits on the key and then replays the response
    instead of doing the work twice (see :mod:`app.lib.idempotency`).
    """

    __tablename__ = "idempotency_record"

    client_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    operation: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    location: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


class RateLimitWindow(DefaultBase):
    """Calls of one client under one scope in one fixed window, shared by every replica.

    Counted with one atomic upsert per call (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``),
    so replicas never lose a count between a read and a write.
    """

    __tablename__ = "rate_limit_window"

    client_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[int] = mapped_column(Integer, primary_key=True)
    """Unix time (seconds) at which the window opened."""
    calls: Mapped[int] = mapped_column(Integer)
