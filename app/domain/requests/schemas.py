"""Bodies of the data-subject request endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from app.domain.external.schemas import TaskOut
from app.domain.recipients.schemas import RecipientOut
from app.lib.schema import BaseStruct, InputStruct

__all__ = (
    "ChangeValue",
    "ErasurePlanOut",
    "ExportFormat",
    "ExtensionIn",
    "OutsideReferenceOut",
    "RequestIn",
    "RequestKind",
    "RequestOut",
    "RequestPage",
    "RequestStatus",
    "ScrubPlanOut",
    "SystemPlanOut",
    "SystemProgressOut",
    "SystemStatus",
    "TablePlanOut",
)

RequestKind = Literal["access", "erasure", "rectification"]
RequestStatus = Literal[
    "received",
    "awaiting_approval",
    "queued",
    "running",
    "awaiting_systems",
    "completed",
    "failed",
    "rejected",
    "cancelled",
]
"""Where a request is; ``completed``, ``failed``, ``rejected`` and ``cancelled`` are final.
``awaiting_systems``: every database system is done, some external system has not reported."""
SystemStatus = Literal["pending", "running", "completed", "failed"]
"""Where a request is in one system."""
ExportFormat = Literal["json", "zip"]
ChangeValue = str | int | float | bool | None
"""A rectified value: text, number, boolean or null (dates as ISO 8601 text)."""


class RequestIn(InputStruct):
    """A data-subject request.

    ``identities`` map identity names the manifests declare (``email``, ``user_id``) to the
    subject's values; a system uses those it declares, and all of them must match the same
    subject there. ``changes`` (rectification only) is ``{system: {table: {column: value}}}``:
    every row of that table belonging to the subject gets the value; only columns the manifest
    marks ``rectifiable`` are accepted.
    """

    kind: RequestKind
    identities: Annotated[
        dict[str, Annotated[str, msgspec.Meta(min_length=1, max_length=512)]],
        msgspec.Meta(min_length=1, max_length=16),
    ]
    tenant: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    systems: Annotated[list[str], msgspec.Meta(min_length=1, max_length=256)] | None = None
    changes: dict[str, dict[str, dict[str, ChangeValue]]] | None = None
    dry_run: bool = False
    callback_url: Annotated[str, msgspec.Meta(min_length=8, max_length=2048)] | None = None
    """Where this request's events are sent (signed like ``/v1/webhooks``; https, public host)."""


class ExtensionIn(InputStruct):
    """Extend the deadline (Art. 12(3)): a reason, and either ``months`` (1 or 2) or ``until``."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    months: Annotated[int, msgspec.Meta(ge=1, le=2)] | None = None
    until: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    """With a time zone (RFC 3339), like every timestamp Lethe reads."""


class SystemProgressOut(BaseStruct):
    """Progress of the request in one system."""

    system: str
    manifest_version: int
    status: SystemStatus
    not_found: bool
    counts: dict[str, Any]
    error: str | None


class RequestOut(BaseStruct):
    """A request, its deadlines and its per-system progress."""

    id: uuid.UUID
    kind: RequestKind
    status: RequestStatus
    received_at: datetime
    due_at: datetime
    extended_due_at: datetime | None
    extension_reason: str | None
    overdue: bool
    dry_run: bool
    subject_ref: str
    identity_types: list[str]
    attempt: int
    started_at: datetime | None
    completed_at: datetime | None
    failure_reason: str | None
    export_available: bool
    export_expires_at: datetime | None
    systems: list[SystemProgressOut]
    callback_secret: str | None = None
    """The ``whsec_`` secret signing ``callback_url`` deliveries: only in the creation answer."""
    external_tasks: list[TaskOut] = []
    """One task per external system (``kind: external`` manifest) the request involves."""
    recipients: list[RecipientOut] = []
    """Art. 19: for a completed rectification or erasure, every recipient the manifests name for
    a table (or external system) it changed, and whether it was told."""


class RequestPage(BaseStruct):
    """A page of requests, oldest first; pass ``next_cursor`` as ``cursor`` (null at the end)."""

    items: list[RequestOut]
    next_cursor: str | None


class OutsideReferenceOut(BaseStruct):
    """A foreign key from rows erasure keeps into rows erasure deletes."""

    constraint: str
    referencing_table: str
    referencing_columns: list[str]
    referenced_table: str
    rows: int
    action: str


class TablePlanOut(BaseStruct):
    """What erasure does to one table: strategy, rows affected and the SQL that runs.

    The SQL shows the subject key as ``:subject_key_0``, never its value.
    """

    table: str
    strategy: str
    rows: int
    links: list[str]
    legal_basis: str | None
    retention: str | None
    changed_columns: dict[str, str]
    retained_columns: list[str]
    sql: list[str]
    batched: bool
    outside_references: list[OutsideReferenceOut]


class ScrubPlanOut(BaseStruct):
    """A column whose rows (anyone's) erasure scrubs of the subject's identity values.

    ``rows`` counts the rows mentioning the subject now; the SQL shows the patterns as
    placeholders (``:scrub_pattern_0``), never the values.
    """

    table: str
    column: str
    identities: list[str]
    rows: int
    sql: list[str]


class SystemPlanOut(BaseStruct):
    """The plan of one system; ``blocked`` says why execution would fail."""

    system: str
    found: bool
    rows: int
    blocked: str | None
    tables: list[TablePlanOut]
    source: Literal["recorded", "live"]
    recorded_at: datetime | None = None
    scrubs: list[ScrubPlanOut] = msgspec.field(default_factory=list)


class ErasurePlanOut(BaseStruct):
    """The erasure plan of a request, per system, in execution order."""

    request_id: uuid.UUID
    dry_run: bool
    systems: list[SystemPlanOut]
