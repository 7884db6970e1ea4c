"""Bodies of the backup endpoints: health per system and check, restore tests."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import msgspec

from app.lib.schema import BaseStruct, InputStruct

__all__ = (
    "BackupCheck",
    "BackupHealthOut",
    "RestoreTestIn",
    "RestoreTestOut",
    "ResurrectedSubjectOut",
    "SystemHealthOut",
)

Status = Literal["ok", "degraded", "critical"]


class BackupCheck(BaseStruct):
    """One verdict on one source (``freshness``, ``size``, ``checksum``, ``status``, ``archive``...)."""

    source: str
    kind: str
    check: str
    status: Status
    reason: str
    newest_at: datetime | None = None
    age_seconds: float | None = None
    size_bytes: int | None = None


class SystemHealthOut(BaseStruct):
    """Every check of one system; ``status`` is the worst of them."""

    system: str
    status: Status
    checks: list[BackupCheck]
    last_passed_restore_test_at: datetime | None = None


class BackupHealthOut(BaseStruct):
    """Backup health of every configured system; ``status`` is the worst over all."""

    status: Status
    checked_at: datetime
    systems: list[SystemHealthOut]


class RestoreTestIn(InputStruct):
    """Which system's newest dump to restore into a scratch database."""

    system: str


class ResurrectedSubjectOut(BaseStruct):
    """An erased subject the backup would bring back, under the references requests and audit use.

    ``subject_key_ref``: the tombstone's reference of the subject key (also in ``resurrected_refs``
    and on ``backup.erasure_replayed`` events); ``request_id`` and ``subject_ref``: the erasure
    request that tombstoned it and its pseudonymous reference (``GET /v1/requests/{id}``, audit
    events of that request); null when no request recorded the tombstone.
    """

    subject_key_ref: str
    request_id: uuid.UUID | None
    subject_ref: str | None


class RestoreTestOut(BaseStruct):
    """A restore test: ``running``, then ``passed`` or ``failed`` with a reason.

    ``tables`` maps every manifest table to its row count in the restored copy (null: missing).
    ``resurrected_refs`` are the tombstone references of erased subjects the backup still holds.
    """

    id: uuid.UUID
    system: str
    status: Literal["running", "passed", "failed"]
    requested_by: str
    started_at: datetime
    finished_at: datetime | None
    dump_name: str | None
    dump_size: int | None
    dump_modified_at: datetime | None
    scratch_database: str | None
    scratch_dropped: bool | None
    restore_exit_code: int | None
    tables: dict[str, int | None]
    missing_tables: list[str]
    empty_tables: list[str]
    resurrected_subjects: int | None
    resurrected_refs: list[str]
    reason: str | None
    duration_seconds: float | None
    resurrected: list[ResurrectedSubjectOut] = msgspec.field(default_factory=list)
