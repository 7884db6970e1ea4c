"""Bodies of ``/v1/retention``: policies in and out, filters, runs, pages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from app.lib.schema import BaseStruct, InputStruct

__all__ = (
    "Action",
    "FilterIn",
    "FilterOut",
    "Operator",
    "PolicyIn",
    "PolicyOut",
    "PolicyPage",
    "PolicyPatch",
    "PolicySource",
    "RunOut",
    "RunPage",
    "RunStatus",
    "RunTrigger",
)

Operator = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "is_null", "not_null"]
Action = Literal["delete", "anonymize", "soft_delete"]
RunStatus = Literal["running", "incomplete", "completed", "failed"]
"""``incomplete``: the run stopped at its time limit and the scheduler resumes it."""
RunTrigger = Literal["api", "schedule"]
PolicySource = Literal["manifest", "api"]
"""``manifest`` policies follow the latest manifest and are read-only here."""
Scalar = str | int | float | bool
PolicyName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="Letters, digits, _.:-")]
Duration = Annotated[str, Meta(max_length=64, description="ISO 8601 duration, e.g. P30D, P1M, P7Y, PT12H")]
BatchSize = Annotated[int, Meta(ge=1, le=100_000)]


class FilterIn(InputStruct):
    """``column <op> value``; ``in``/``not_in`` take a list, ``is_null``/``not_null`` no value."""

    column: str
    op: Operator
    value: Scalar | list[Scalar] | None = None


class FilterOut(BaseStruct):
    """A stored filter."""

    column: str
    op: Operator
    value: Scalar | list[Scalar] | None = None


class PolicyIn(InputStruct):
    """A new policy. ``age_column`` is required: a policy without one is refused (422)."""

    system: str
    name: PolicyName
    table: str
    older_than: Duration
    age_column: str | None = None
    action: Action = "delete"
    soft_delete_column: str | None = None
    filters: list[FilterIn] = msgspec.field(default_factory=list)
    batch_size: BatchSize = 1000
    schedule: Duration | None = None
    enabled: bool = True


class PolicyPatch(InputStruct):
    """Fields to change; absent fields stay as they are (``null`` clears the nullable ones)."""

    table: str | UnsetType = UNSET
    age_column: str | UnsetType = UNSET
    older_than: Duration | UnsetType = UNSET
    action: Action | UnsetType = UNSET
    soft_delete_column: str | None | UnsetType = UNSET
    filters: list[FilterIn] | UnsetType = UNSET
    batch_size: BatchSize | UnsetType = UNSET
    schedule: Duration | None | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET


class PolicyOut(BaseStruct):
    """A policy; ``source`` is ``manifest`` (change it in the manifest) or ``api``."""

    id: uuid.UUID
    system: str
    name: str
    source: PolicySource
    manifest_version: int | None
    table: str
    age_column: str
    older_than: str
    action: Action
    soft_delete_column: str | None
    filters: list[FilterOut]
    batch_size: int
    schedule: str | None
    enabled: bool
    next_due_at: datetime | None
    created_at: datetime
    updated_at: datetime


class PolicyPage(BaseStruct):
    """A page of policies; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[PolicyOut]
    next_cursor: str | None


class RunOut(BaseStruct):
    """A run: ``running``, ``incomplete`` (stopped at its time budget or on a timeout; resumed by
    the scheduler with the same cut-off), ``completed`` or ``failed``. A dry run has ``sql``."""

    id: uuid.UUID
    policy_id: uuid.UUID | None
    policy_name: str
    system: str
    table: str
    action: Action
    dry_run: bool
    trigger: RunTrigger
    actor: str
    status: RunStatus
    cutoff: datetime
    rows: int
    batches: int
    longest_batch_ms: int
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    sql: str | None


class RunPage(BaseStruct):
    """A page of runs, newest first."""

    items: list[RunOut]
    next_cursor: str | None
