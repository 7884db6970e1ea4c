"""Restore tests of backups: what was restored, what it held, and what it would bring back."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import GUID, DateTimeUTC, JsonB
from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ("BackupRestoreTest",)


class BackupRestoreTest(DefaultBase):
    """One restore test of a system's newest dump into a scratch database.

    ``status`` goes ``running -> passed | failed``. ``resurrected_refs`` are tombstone references
    (HMACs) of erased subjects the backup still holds: restoring it would bring them back, so
    ``lethe backups replay-erasures`` must follow a real restore. No identifier is ever stored.
    """

    __tablename__ = "backup_restore_test"
    __table_args__ = (Index("ix_backup_restore_test_system_started_at", "system", "started_at"),)

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=uuid.uuid4)
    system: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    dump_name: Mapped[str | None] = mapped_column(String(255))
    dump_size: Mapped[int | None] = mapped_column(BigInteger)
    dump_modified_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    scratch_database: Mapped[str | None] = mapped_column(String(63))
    scratch_dropped: Mapped[bool | None] = mapped_column(Boolean)
    restore_exit_code: Mapped[int | None] = mapped_column(Integer)
    tables: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict)
    resurrected_subjects: Mapped[int | None] = mapped_column(Integer)
    resurrected_refs: Mapped[list[str]] = mapped_column(JsonB, default=list)
    reason: Mapped[str | None] = mapped_column(String(500))
    duration_seconds: Mapped[float | None] = mapped_column(Float)
