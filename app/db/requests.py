"""Data-subject requests: the durable request row and its per-system progress rows."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, Select, String, Uuid, false, select
from sqlalchemy.orm import Mapped, mapped_column

from app.lib.kinds import REQUEST_KINDS

__all__ = ("FINAL_STATUSES", "REQUEST_KINDS", "REQUEST_STATUSES", "SubjectRequest", "SubjectRequestSystem")

REQUEST_STATUSES = (
    "received",
    "awaiting_approval",
    "queued",
    "running",
    "awaiting_systems",
    "completed",
    "failed",
    "rejected",
    "cancelled",
)
FINAL_STATUSES = frozenset({"completed", "failed", "rejected", "cancelled"})
"""A request in one of these states never changes again; its identities are wiped."""


class SubjectRequest(DefaultBase):
    """One data-subject request (Art. 15/16/17), carried out by workers across systems.

    The identities needed to find the subject (and rectification values) are stored encrypted
    with the artifact key and wiped when the request reaches a final state; what remains is the
    pseudonymous ``subject_ref``. ``attempt`` grows on every claim: every progress write is
    fenced by it, so a worker whose lease expired cannot overwrite a newer outcome.
    """

    __tablename__ = "subject_request"
    __table_args__ = (
        Index("ix_subject_request_status_received", "status", "received_at"),
        Index("ix_subject_request_received_id", "received_at", "id"),
        Index("ix_subject_request_client_id", "client_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))
    received_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    extended_due_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    extension_reason: Mapped[str | None] = mapped_column(String(500))
    systems: Mapped[list[str]] = mapped_column(JsonB)
    manifest_versions: Mapped[dict[str, Any]] = mapped_column(JsonB)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    client_id: Mapped[str] = mapped_column(String(255))
    actor: Mapped[str] = mapped_column(String(255))
    subject_ref: Mapped[str] = mapped_column(String(64))
    identity_types: Mapped[list[str]] = mapped_column(JsonB)
    identities_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    changes_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    artifact_attempt: Mapped[int | None] = mapped_column(Integer)
    artifact_expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    artifact_erased_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    """When the export was deleted because its subject was erased (downloads answer 410)."""
    holds_tasks: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Whether the request was created with external systems (tasks held for them): fixed at
    creation, so the many requests without one skip every look for tasks."""
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))

    @property
    def effective_due_at(self) -> datetime:
        """The deadline in force: the extended one when the request was extended."""
        return self.extended_due_at or self.due_at


class SubjectRequestSystem(DefaultBase):
    """Progress of one request in one system: status, counts and a cursor for resumable work."""

    __tablename__ = "subject_request_system"
    __table_args__ = (Index("ix_subject_request_system_key_ref", "system", "subject_key_ref"),)

    request_id: Mapped[uuid.UUID] = mapped_column(
        Uuid,
        ForeignKey("subject_request.id", name="fk_subject_request_system_request_id", ondelete="CASCADE"),
        primary_key=True,
    )
    system: Mapped[str] = mapped_column(String(128), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    manifest_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    not_found: Mapped[bool] = mapped_column(Boolean, default=False)
    counts: Mapped[dict[str, Any]] = mapped_column(JsonB)
    cursor: Mapped[dict[str, Any] | None] = mapped_column(JsonB)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(500))
    subject_key_ref: Mapped[str | None] = mapped_column(String(64))
    """HMAC of the subject's key in this system (as on erasure tombstones); None: not resolved."""
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))

    @classmethod
    def of_request(cls, request_id: uuid.UUID) -> Select[tuple[SubjectRequestSystem]]:
        """The request's rows in the order its systems are worked through."""
        return select(cls).where(cls.request_id == request_id).order_by(cls.position)
