"""Retention policies (from manifests and the API) and the record of every purge run."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import GUID, DateTimeUTC, JsonB
from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ("RetentionPolicyRecord", "RetentionRun")


class RetentionPolicyRecord(DefaultBase):
    """One retention policy of one system.

    ``source`` is ``manifest`` (kept in step with the latest manifest version, read-only over the
    API) or ``api``. ``next_due_at`` is the start of the next scheduling window and ``lease_*``
    the replica currently running the policy: both are claimed with conditional UPDATEs, so
    exactly one replica runs a policy per window, on SQLite and PostgreSQL alike.
    """

    __tablename__ = "retention_policy"
    __table_args__ = (
        UniqueConstraint("system", "name", name="uq_retention_policy_system_name"),
        Index("ix_retention_policy_next_due_at", "next_due_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=uuid.uuid4)
    system: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(16))
    manifest_version: Mapped[int | None] = mapped_column(Integer)
    table_name: Mapped[str] = mapped_column(String(128))
    age_column: Mapped[str] = mapped_column(String(128))
    older_than: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    soft_delete_column: Mapped[str | None] = mapped_column(String(128))
    filters: Mapped[list[dict[str, Any]]] = mapped_column(JsonB)
    batch_size: Mapped[int] = mapped_column(Integer)
    schedule: Mapped[str | None] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean)
    next_due_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


class RetentionRun(DefaultBase):
    """One run of a policy: dry (a count and the SQL) or real (batches, resumable).

    ``cutoff`` and ``purge_at`` are fixed when the run starts, and ``cursor`` is the keyset
    position after the last committed batch, so a run resumed after a crash purges exactly what
    an uninterrupted one would. ``attempt`` grows on every resumption; progress writes carry it,
    so a replica that lost its lease cannot overwrite a newer attempt's progress.
    """

    __tablename__ = "retention_run"
    __table_args__ = (
        Index("ix_retention_run_policy_status", "policy_id", "status"),
        Index("ix_retention_run_started_at", "started_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=uuid.uuid4)
    policy_id: Mapped[uuid.UUID | None] = mapped_column(
        GUID, ForeignKey("retention_policy.id", name="fk_retention_run_policy_id", ondelete="SET NULL")
    )
    policy_name: Mapped[str] = mapped_column(String(128))
    system: Mapped[str] = mapped_column(String(63))
    table_name: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))
    dry_run: Mapped[bool] = mapped_column(Boolean)
    trigger: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    cutoff: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    purge_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    cursor: Mapped[list[Any] | None] = mapped_column(JsonB)
    rows_affected: Mapped[int] = mapped_column(BigInteger)
    batches: Mapped[int] = mapped_column(Integer)
    longest_batch_ms: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    started_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    error: Mapped[str | None] = mapped_column(String(512))
    sql: Mapped[str | None] = mapped_column(Text)
