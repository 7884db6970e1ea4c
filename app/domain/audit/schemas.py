"""Bodies of the audit endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from app.lib.schema import BaseStruct, InputStruct

__all__ = (
    "AuditEventOut",
    "AuditEventPage",
    "ChainVerification",
    "CheckpointIn",
    "CheckpointOut",
    "PendingAuditEventOut",
    "PendingAuditEventPage",
)


class AuditEventOut(BaseStruct):
    """One event of the chain; ``subject_ref`` is pseudonymous."""

    seq: int
    occurred_at: datetime
    actor: str
    action: str
    request_id: str | None
    system: str | None
    subject_ref: str | None
    payload: dict[str, Any]
    prev_hash: str
    hash: str
    event_id: UUID | None = None
    """The id the event was appended with (null for events linked before the sequencer)."""


class PendingAuditEventOut(BaseStruct):
    """An event its writer committed and the sequencer has not linked yet (no ``seq`` so far)."""

    event_id: UUID
    occurred_at: datetime
    actor: str
    action: str
    request_id: str | None
    system: str | None
    subject_ref: str | None
    payload: dict[str, Any]


class PendingAuditEventPage(BaseStruct):
    """A page of pending events in queue order; ``next_cursor`` continues (null at the end)."""

    items: list[PendingAuditEventOut]
    next_cursor: str | None


class AuditEventPage(BaseStruct):
    """A page of events; pass ``next_cursor`` as ``cursor`` for the next one (null at the end)."""

    items: list[AuditEventOut]
    next_cursor: str | None


class CheckpointOut(BaseStruct):
    """A signed head: Ed25519 over the canonical JSON of (seq, head_hash, time).

    The signed message is ``b"lethe-audit-checkpoint-v1\\n"`` followed by the compact JSON
    ``{"head_hash":...,"seq":...,"time":...}`` with sorted keys; ``public_key`` verifies it.
    """

    seq: int
    head_hash: str
    time: str
    signature: str
    algorithm: str
    public_key: str | None


class CheckpointIn(InputStruct):
    """A checkpoint previously obtained from ``GET /v1/audit/checkpoints``."""

    seq: int
    head_hash: str
    time: str
    signature: str
    algorithm: str = "Ed25519"
    public_key: str | None = None


class ChainVerification(BaseStruct):
    """Whether the chain verifies; if not, the first broken ``seq`` and the reason."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    broken_seq: int | None
    reason: str | None
    detail: str | None
    checkpoint_seq: int | None
    pending: int = 0
    """Events committed and not linked yet: verification covers linked events only."""
