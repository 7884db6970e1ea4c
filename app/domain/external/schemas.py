"""Bodies of the external task endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from app.lib.schema import BaseStruct, InputStruct

__all__ = ("TaskCompleteIn", "TaskFailIn", "TaskIdentitiesOut", "TaskOut", "TaskStatus")

TaskStatus = Literal["held", "pending", "completed", "failed", "cancelled"]
"""``held``: the request waits for approval (the system is not told yet); ``pending``: told,
waiting for its report; ``completed`` / ``failed``: reported; ``cancelled``: the request ended
(failed, rejected or cancelled) before the system reported, nothing more is expected of it."""
Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]


class TaskCompleteIn(InputStruct):
    """What the system did: counts (e.g. ``{"contacts": 1}``) and where its evidence is kept."""

    counts: Annotated[
        dict[Annotated[str, msgspec.Meta(min_length=1, max_length=128)], Count], msgspec.Meta(max_length=64)
    ] = {}
    evidence: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | None = None
    """A reference to the system's own record (a ticket id, a URL): never personal data."""
    export_part: dict[str, Any] | list[Any] | None = None
    """Access requests only: what the system holds about the subject (any JSON object or array,
    at most ``LETHE_EXTERNAL_EXPORT_PART_BYTES`` encoded). It joins the subject's export: the
    JSON document's ``systems.<system>.data`` and the archive's ``<system>/data.json``. Kept
    encrypted until the export is assembled, then deleted."""


class TaskFailIn(InputStruct):
    """Why the system could not do it (no personal data: it is kept with the request)."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class TaskOut(BaseStruct):
    """One external system's task of a request."""

    id: uuid.UUID
    system: str
    manifest_version: int
    status: TaskStatus
    notify: Literal["manual", "webhook"]
    """How the system was told: ``webhook`` (its subscription) or ``manual`` (the request's client)."""
    due_at: datetime | None
    overdue: bool
    identities_read: bool
    opened_at: datetime | None
    """When the system was told (null while held): its owner may read the identities once
    within ``LETHE_EXTERNAL_IDENTITIES_TTL_SECONDS`` of it."""
    counts: dict[str, int]
    evidence: str | None
    error: str | None
    updated_at: datetime


class TaskIdentitiesOut(BaseStruct):
    """The identities the system needs, decrypted once for the task's owner; for a rectification
    also the new values the controller asks of this system."""

    task_id: uuid.UUID
    request_id: uuid.UUID
    system: str
    kind: str
    identities: dict[str, str]
    tenant: str | None
    changes: dict[str, dict[str, str | int | float | bool | None]] | None = None
    """Rectification: ``{record: {field: new value}}``, as the request gave them for this system."""
