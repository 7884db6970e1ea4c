"""What a worker hands an engine for one request, and what the engine hands back.

Every kind of request (access, rectification, erasure) is run by one handler with the signature
``async def handler(run: RequestRun) -> RequestOutcome``. The worker (in ``app.domain.requests.jobs``)
builds the :class:`RequestRun`: decrypted identities, the manifests of the versions recorded on
the request, per-system progress (so work resumes where a dead worker left it), and callbacks that
write progress *fenced by the attempt number*: when another worker has taken the request over,
they raise :class:`LeaseLost` and the engine must stop without touching anything else.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.config import Settings
from app.engine.errors import EngineError
from app.engine.reflection_cache import ReflectionCache
from app.engine.schema_info import Reflection, reflect
from app.lib.leases import LeaseLost
from app.manifest.model import Manifest
from app.manifest.names import manifest_schemas

__all__ = (
    "ExternalSection",
    "LeaseLost",
    "ProgressSink",
    "RequestFailed",
    "RequestHandler",
    "RequestOutcome",
    "RequestRun",
    "SystemOutcome",
    "SystemRun",
)


class RequestFailed(EngineError):
    """The request cannot be carried out; the message names systems, tables, columns only."""

    def __init__(self, reason: str, *, system: str | None = None) -> None:
        super().__init__(reason, system=system)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class SystemOutcome:
    """The result of one system.

    Attributes:
        not_found: the subject does not exist in this system (a valid answer, not an error).
        counts: rows per table (exported, rectified, erased...).
        audit: extra audit payload (table and column names, counts: never values).
        tombstones: erasure only: ``subject_key_ref`` of each erased subject key
            (``hmac_ref(audit_key, system, "key", str(key))``), stored as erasure tombstones in the
            same transaction that marks the system completed.
    """

    not_found: bool = False
    counts: Mapping[str, int] = field(default_factory=dict)
    audit: Mapping[str, Any] = field(default_factory=dict)
    tombstones: Sequence[str] = ()
    subject_key_ref: str | None = None
    """HMAC of the subject's key in this system (:func:`app.engine.subjects.subject_key_reference`)
    when the subject was found: links requests about the same person made with other identities."""


@dataclass(kw_only=True)
class SystemRun:
    """One system of a request: its manifest (the recorded version) and stored progress."""

    system: str
    manifest: Manifest
    manifest_version: int
    status: str = "pending"
    """``pending``, ``running`` or ``completed`` (completed systems are skipped on resume)."""
    not_found: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    cursor: dict[str, Any] | None = None
    """Resumable state saved by :meth:`ProgressSink.save_cursor` (e.g. the next keyset batch)."""


class ProgressSink(Protocol):
    """Fenced progress writes into the service store (implemented by the worker)."""

    async def heartbeat(self) -> None:
        """Extend the lease; raises :class:`LeaseLost` when the request was taken over."""

    async def save_cursor(self, system: str, cursor: dict[str, Any], counts: Mapping[str, int]) -> None:
        """Record resumable progress of ``system`` (commit it before starting the next batch)."""

    async def complete_system(self, system: str, outcome: SystemOutcome, *, action: str | None) -> None:
        """Mark ``system`` completed and append the audit event ``action`` (if any) in one transaction."""

    async def record_plan(self, system: str, plan: Mapping[str, Any]) -> None:
        """Keep the erasure plan of ``system`` (what ``GET /v1/requests/{id}/plan`` returns once it ran)."""


class TargetSource(Protocol):
    """Gives the engine for a system's target database (created lazily, shared per system)."""

    async def __call__(self, system: str, manifest: Manifest) -> AsyncEngine:
        """The async engine of ``system``; raises ``TargetUnavailable`` when it cannot connect."""


@dataclass(frozen=True, kw_only=True)
class ExternalSection:
    """An external system's part of an access export, as it reported it with its task."""

    system: str
    manifest_version: int
    metadata: Mapping[str, Any]
    """The Art. 15(1) facts its manifest declares (purpose, legal basis, categories, recipients)."""
    counts: Mapping[str, int]
    data: Any = None
    """The export part (a JSON object or array), or None when the system reported none."""


@dataclass(kw_only=True)
class RequestRun:
    """Everything an engine needs to carry out one request."""

    request_id: uuid.UUID
    kind: str
    attempt: int
    started_at: datetime
    """When the request first started running: stable across resumed attempts."""
    dry_run: bool
    subject_ref: str
    identities: dict[str, str]
    tenant: str | None
    changes: dict[str, dict[str, dict[str, Any]]]
    """Rectification: ``{system: {table: {column: value}}}``; empty for other kinds."""
    systems: list[SystemRun]
    consent_history: list[dict[str, Any]]
    settings: Settings
    progress: ProgressSink
    targets: TargetSource
    external: list[ExternalSection] = field(default_factory=list)
    """Access: the sections of the request's external systems, every one of them reported."""
    holds_tasks: bool = False
    """Whether the request has external systems (whose tasks may still be pending)."""
    reflections: ReflectionCache | None = None
    """The worker's reflections of its targets (None: every run reflects anew)."""

    async def reflection(
        self, connection: AsyncConnection, system: SystemRun, *, only: Collection[str] | None = None
    ) -> Reflection:
        """The target of ``system`` reflected (its manifest's schemas; ``only`` those tables and the
        ones they reference): the worker's cached reflection while the catalog is unchanged.

        Raises:
            ManifestInvalid: a named schema does not exist (or the target is SQLite).
        """
        schemas = manifest_schemas(system.manifest)
        if self.reflections is None:
            return await reflect(connection, schemas, only=only)
        return await self.reflections.reflection(
            connection, system.system, system.manifest_version, schemas, only=only
        )


@dataclass(frozen=True, kw_only=True)
class RequestOutcome:
    """What the completion audit event and the request row record."""

    audit: Mapping[str, Any] = field(default_factory=dict)
    artifact: bool = False
    """Whether the run wrote export artifacts for this attempt."""


class RequestHandler(Protocol):
    """``async def handler(run: RequestRun) -> RequestOutcome``: one per request kind."""

    async def __call__(self, run: RequestRun) -> RequestOutcome:
        """Carry out the request; raise :class:`RequestFailed` for a clean failure."""
