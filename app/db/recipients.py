"""Art. 19 recipients of a completed rectification or erasure, and how each was told."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ("RequestRecipient",)


class RequestRecipient(DefaultBase):
    """One recipient the manifests name for what a completed request changed.

    Written in the transaction that completes the request. ``event_seq`` is the outbox event
    (``recipient.notice``) sent to the recipient's client, None when nobody of that client
    subscribed: its deliveries give the notification status. ``notified_at`` / ``notified_by`` /
    ``evidence`` record a notification made by hand (``POST .../recipients/{name}/notified``).
    """

    __tablename__ = "request_recipient"

    request_id: Mapped[uuid.UUID] = mapped_column(
        Uuid,
        ForeignKey("subject_request.id", name="fk_request_recipient_request_id", ondelete="CASCADE"),
        primary_key=True,
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    client_id: Mapped[str | None] = mapped_column(String(255))
    tables: Mapped[dict[str, Any]] = mapped_column(JsonB)
    """What changed that the recipient received: system -> table -> rows."""
    categories: Mapped[list[str]] = mapped_column(JsonB)
    """Categories of personal data in those tables (columns' categories, or the external system's)."""
    event_seq: Mapped[int | None] = mapped_column(Integer)
    notified_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    notified_by: Mapped[str | None] = mapped_column(String(255))
    evidence: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
