"""Append-only tables: the hash-chained audit log, the consent ledger, erasure tombstones."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ("APPEND_ONLY_TABLES", "AuditEvent", "ConsentEvent", "ErasureTombstone")

APPEND_ONLY_TABLES = ("audit_event", "consent_event", "erasure_tombstone")
"""Tables whose UPDATE, DELETE and TRUNCATE the database refuses (triggers of migration 0002)."""


class AuditEvent(DefaultBase):
    """One link of the audit chain.

    ``seq`` is assigned by :func:`app.domain.audit.services.append` under a lock (never by a
    sequence, which would leave gaps on rollback); ``hash`` covers every other column and
    ``prev_hash``, so altering, removing or reordering a row breaks the chain at that ``seq``.
    ``hash`` is an HMAC under the chain key of ``epoch`` (a key the database never holds);
    epoch 0 marks links written before the chain was keyed (plain SHA-256).
    """

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_action", "action"),
        Index("ix_audit_event_request_id", "request_id"),
        Index("ix_audit_event_system", "system"),
        Index("ix_audit_event_subject_ref", "subject_ref"),
        Index("ix_audit_event_occurred_at", "occurred_at"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    system: Mapped[str | None] = mapped_column(String(128))
    subject_ref: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonB)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    epoch: Mapped[int] = mapped_column(Integer, server_default="0")


class ConsentEvent(DefaultBase):
    """One grant or withdrawal of consent; status is derived from these, never stored."""

    __tablename__ = "consent_event"
    __table_args__ = (Index("ix_consent_event_subject_purpose", "subject_ref", "purpose", "occurred_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    subject_ref: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(128))
    granted: Mapped[bool] = mapped_column(Boolean)
    policy_version: Mapped[str] = mapped_column(String(128))
    text_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    actor: Mapped[str] = mapped_column(String(255))


class ErasureTombstone(DefaultBase):
    """An erased subject of one system: the HMAC of its key, never the key itself.

    Written by the erasure engine when a subject is erased; read after a backup restore to
    replay erasures (``lethe backups replay-erasures``) and to count what a backup would bring
    back. ``subject_key_ref`` is ``hmac_ref(audit_key, system, "key", str(key_value))``
    (see :func:`app.domain.audit.services.tombstone_reference`).
    """

    __tablename__ = "erasure_tombstone"
    __table_args__ = (
        Index("ix_erasure_tombstone_system_ref", "system", "subject_key_ref"),
        Index("ix_erasure_tombstone_erased_at", "erased_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    system: Mapped[str] = mapped_column(String(128))
    subject_key_ref: Mapped[str] = mapped_column(String(64))
    erased_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    request_id: Mapped[str | None] = mapped_column(String(128))
