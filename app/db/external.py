"""Tasks of external systems: one per request and ``kind: external`` system, reported back by it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint, Uuid
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ("TASK_STATUSES", "ExternalTask")

TASK_STATUSES = ("held", "pending", "completed", "failed", "cancelled")


class ExternalTask(DefaultBase):
    """What one external system must do for one request, and what it reported.

    ``client_id`` owns the task (the notified subscription's client, else the request's client):
    only it (or ``requests:admin``) reads the identities once and reports the task done.
    """

    __tablename__ = "external_task"
    __table_args__ = (
        Index("ix_external_task_status_due", "status", "due_at"),
        UniqueConstraint("id", name="uq_external_task_id"),
    )

    request_id: Mapped[uuid.UUID] = mapped_column(
        Uuid,
        ForeignKey("subject_request.id", name="fk_external_task_request_id", ondelete="CASCADE"),
        primary_key=True,
    )
    system: Mapped[str] = mapped_column(String(128), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid)
    manifest_version: Mapped[int] = mapped_column(Integer)
    client_id: Mapped[str] = mapped_column(String(255))
    notify: Mapped[str] = mapped_column(String(64))
    """``manual`` or the id of the notified webhook subscription."""
    status: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    identities_read_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    opened_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    """When the task was opened (its system told); its one-time identity read is refused (410)
    ``LETHE_EXTERNAL_IDENTITIES_TTL_SECONDS`` later. Null while held (and for tasks opened before
    this column existed: their ``updated_at`` counts)."""
    counts: Mapped[dict[str, Any]] = mapped_column(JsonB)
    evidence: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[str | None] = mapped_column(String(500))
    actor: Mapped[str | None] = mapped_column(String(255))
    export_part: Mapped[bytes | None] = mapped_column(
        LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
    )
    """Access requests: the system's part of the subject's export, frame-encrypted
    (:mod:`app.domain.external.parts`); deleted once the export is assembled or the request ends."""
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
