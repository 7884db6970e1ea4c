"""Append-only tables: the hash-chained audit log, the consent ledger, erasure tombstones."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

__all__ = (
    "APPEND_ONLY_TABLES",
    "AuditEvent",
    "AuditPending",
    "AuditSequencer",
    "ConsentEvent",
    "ErasureTombstone",
)

APPEND_ONLY_TABLES = ("audit_event", "consent_event", "erasure_tombstone")
"""Tables whose UPDATE, DELETE and TRUNCATE the database refuses (triggers of migration 0002)."""


class AuditEvent(DefaultBase):
    """One link of the audit chain.

    Writers queue an :class:`AuditPending` row in their own transaction; the sequencer
    (:mod:`app.domain.audit.sequencer`) assigns ``seq`` and links it here (never a database
    sequence, which would leave gaps on rollback). ``hash`` covers every other column but
    ``event_id``, so altering, removing or reordering a row breaks the chain at that ``seq``.
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
        Index("uq_audit_event_event_id", "event_id", unique=True),
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
    event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    """The id the event had while pending (null for events linked before the sequencer)."""


class AuditPending(DefaultBase):
    """An audit event committed by its writer and not yet linked into the chain.

    Writers only INSERT here, in the transaction of the work they record; the sequencer moves
    rows into :class:`AuditEvent` and deletes them in one transaction per batch. UPDATE is
    refused by a trigger. ``id`` is the queue order (FIFO, roughly commit order).
    """

    __tablename__ = "audit_pending"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    system: Mapped[str | None] = mapped_column(String(128))
    subject_ref: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonB)


class AuditSequencer(DefaultBase):
    """The lease of the one active audit sequencer: a single row, fenced by ``fence``.

    Taking the lease raises ``fence``; every batch starts by extending the lease only where
    ``owner`` and ``fence`` are still its own, which also locks this row until the batch commits,
    so batches never interleave and a sequencer whose lease was taken over writes nothing.
    """

    __tablename__ = "audit_sequencer"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(255))
    fence: Mapped[int] = mapped_column(BigInteger, server_default="0")
    expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))


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
    (see :func:`app.domain.audit.references.tombstone_reference`).
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
