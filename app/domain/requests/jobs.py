"""Request workers: claim with a lease, run the kind's engine, fence every write by attempt.

A worker claims one request at a time: ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (so
replicas never wait on each other), a conditional UPDATE on SQLite (one worker there). The claim
raises ``attempt`` and sets a lease that a heartbeat extends. Every later write (progress, audit,
completion) runs ``UPDATE ... WHERE id = :id AND attempt = :attempt`` first, in the same
transaction: once another worker has taken over an expired lease, the old worker's writes match
no row, it stops, and the newer attempt alone completes the request (one completion event).

Engines are dispatched per kind through :data:`HANDLERS`; each is
``async def handler(run: app.engine.runs.RequestRun) -> app.engine.runs.RequestOutcome``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.audit import ErasureTombstone
from app.db.requests import SubjectRequest, SubjectRequestSystem
from app.domain.audit import services as audit
from app.domain.consent.services import consent_history
from app.domain.requests.catalog import manifest_at
from app.domain.requests.metrics import observe_completion, refresh_request_gauges
from app.domain.requests.services import artifact_ttl, decrypt_subject
from app.engine.runs import (
    LeaseLost,
    RequestFailed,
    RequestHandler,
    RequestOutcome,
    RequestRun,
    SystemOutcome,
    SystemRun,
)
from app.engine.targets import TargetRegistry
from app.lib.errors import LetheError
from app.manifest.model import Manifest

__all__ = (
    "HANDLERS",
    "WORKER_ACTOR",
    "Claim",
    "RequestWorker",
    "background_tasks",
    "handler_for",
    "purge_expired_artifacts",
    "run_workers",
)

logger = logging.getLogger("lethe.workers")

WORKER_ACTOR = "lethe-worker"
HANDLERS: dict[str, str] = {
    "access": "app.engine.export:run_access",
    "rectification": "app.engine.rectify:run_rectification",
    "erasure": "app.engine.erasure:run_erasure",
}
"""Request kind -> ``module:function`` of its engine, imported when first needed."""
PURGE_INTERVAL = timedelta(minutes=1)
GAUGE_INTERVAL_SECONDS = 15.0


def handler_for(kind: str) -> RequestHandler:
    """The engine of ``kind``.

    Raises:
        RequestFailed: the engine is not installed in this build (e.g. erasure before issue 6).
    """
    module_name, _, function = HANDLERS[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
        return cast("RequestHandler", getattr(module, function))
    except (ImportError, AttributeError) as exc:
        raise RequestFailed(f"{kind} engine not available") from exc


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Claim:
    """A request this worker holds, at this attempt."""

    request_id: uuid.UUID
    attempt: int
    kind: str


class _Fence:
    """Progress writes of one claim, each fenced by the claim's attempt (the ``ProgressSink``)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], claim: Claim, lease_seconds: int) -> None:
        self._sessions = sessions
        self.claim = claim
        self._lease = timedelta(seconds=lease_seconds)
        self.lost = False

    async def fence(self, session: AsyncSession) -> datetime:
        """Extend the lease if this attempt still holds the request; else :class:`LeaseLost`."""
        now = _now()
        result = await session.execute(
            update(SubjectRequest)
            .where(
                SubjectRequest.id == self.claim.request_id,
                SubjectRequest.attempt == self.claim.attempt,
                SubjectRequest.status == "running",
            )
            .values(heartbeat_at=now, lease_expires_at=now + self._lease)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            self.lost = True
            raise LeaseLost(f"request {self.claim.request_id} attempt {self.claim.attempt} was taken over")
        return now

    async def heartbeat(self) -> None:
        async with self._sessions() as session, session.begin():
            await self.fence(session)

    async def save_cursor(self, system: str, cursor: dict[str, Any], counts: Mapping[str, int]) -> None:
        async with self._sessions() as session, session.begin():
            now = await self.fence(session)
            await session.execute(
                update(SubjectRequestSystem)
                .where(
                    SubjectRequestSystem.request_id == self.claim.request_id,
                    SubjectRequestSystem.system == system,
                )
                .values(
                    status="running",
                    cursor=cursor,
                    counts=dict(counts),
                    attempt=self.claim.attempt,
                    updated_at=now,
                )
            )

    async def complete_system(self, system: str, outcome: SystemOutcome, *, action: str | None) -> None:
        async with self._sessions() as session, session.begin():
            now = await self.fence(session)
            await session.execute(
                update(SubjectRequestSystem)
                .where(
                    SubjectRequestSystem.request_id == self.claim.request_id,
                    SubjectRequestSystem.system == system,
                )
                .values(
                    status="completed",
                    not_found=outcome.not_found,
                    counts=dict(outcome.counts),
                    cursor=None,
                    attempt=self.claim.attempt,
                    updated_at=now,
                )
            )
            session.add_all(
                ErasureTombstone(
                    system=system, subject_key_ref=ref, erased_at=now, request_id=str(self.claim.request_id)
                )
                for ref in outcome.tombstones
            )
            if action is not None:
                request = await session.get(SubjectRequest, self.claim.request_id)
                await audit.append(
                    session,
                    action=action,
                    actor=WORKER_ACTOR,
                    request_id=str(self.claim.request_id),
                    system=system,
                    subject_ref=request.subject_ref if request else None,
                    payload={"not_found": outcome.not_found, **dict(outcome.audit)},
                )


def _claimable(now: datetime) -> Any:
    return or_(
        SubjectRequest.status == "queued",
        and_(SubjectRequest.status == "running", SubjectRequest.lease_expires_at < now),
    )


class RequestWorker:
    """One worker: claims a request, runs its engine under a heartbeat, completes or fails it."""

    def __init__(
        self, settings: Settings, store_engine: AsyncEngine, targets: TargetRegistry, name: str
    ) -> None:
        self.settings = settings
        self.sessions = async_sessionmaker(store_engine, expire_on_commit=False)
        self.targets = targets
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{name}"[:128]

    async def claim(self) -> Claim | None:
        """Take the oldest queued request, or a running one whose lease expired (resume)."""
        async with self.sessions() as session, session.begin():
            now = _now()
            statement = (
                select(SubjectRequest.id, SubjectRequest.attempt, SubjectRequest.status, SubjectRequest.kind)
                .where(_claimable(now))
                .order_by(SubjectRequest.received_at, SubjectRequest.id)
                .limit(1)
            )
            if session.bind.dialect.name == "postgresql":
                statement = statement.with_for_update(skip_locked=True)
            row = (await session.execute(statement)).first()
            if row is None:
                return None
            request_id, attempt, status, kind = row
            result = await session.execute(
                update(SubjectRequest)
                .where(SubjectRequest.id == request_id, SubjectRequest.attempt == attempt, _claimable(now))
                .values(
                    status="running",
                    attempt=attempt + 1,
                    lease_owner=self.owner,
                    lease_expires_at=now + timedelta(seconds=self.settings.worker_lease_seconds),
                    heartbeat_at=now,
                    started_at=func.coalesce(SubjectRequest.started_at, now),
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None  # another worker won the race (SQLite): look again next time
            subject_ref = (
                await session.execute(
                    select(SubjectRequest.subject_ref).where(SubjectRequest.id == request_id)
                )
            ).scalar_one()
            await audit.append(
                session,
                action="request.resumed" if status == "running" else "request.running",
                actor=WORKER_ACTOR,
                request_id=str(request_id),
                subject_ref=subject_ref,
                payload={"kind": kind, "from": status, "to": "running", "attempt": attempt + 1},
            )
        return Claim(request_id=request_id, attempt=attempt + 1, kind=kind)

    async def _consent_history(
        self, session: AsyncSession, identities: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        key = self.settings.audit_key or ""
        refs = sorted({audit.subject_reference(key, None, name, value) for name, value in identities.items()})
        events = [event for ref in refs for event in await consent_history(session, ref)]
        events.sort(key=lambda e: (e.occurred_at, str(e.id)))
        return [
            {
                "occurred_at": e.occurred_at,
                "purpose": e.purpose,
                "granted": e.granted,
                "policy_version": e.policy_version,
                "text_hash": e.text_hash,
                "source": e.source,
                "recorded_at": e.recorded_at,
            }
            for e in events
        ]

    async def _build_run(self, claim: Claim, fence: _Fence) -> RequestRun:
        async with self.sessions() as session:
            request = await session.get(SubjectRequest, claim.request_id)
            if request is None:
                raise LeaseLost(f"request {claim.request_id} disappeared")
            identities, tenant, changes = decrypt_subject(self.settings, request)
            progress = (
                await session.scalars(
                    select(SubjectRequestSystem)
                    .where(SubjectRequestSystem.request_id == claim.request_id)
                    .order_by(SubjectRequestSystem.position)
                )
            ).all()
            systems = [
                SystemRun(
                    system=p.system,
                    manifest=await manifest_at(session, p.system, p.manifest_version),
                    manifest_version=p.manifest_version,
                    status=p.status,
                    not_found=p.not_found,
                    counts=dict(p.counts),
                    cursor=dict(p.cursor) if p.cursor is not None else None,
                )
                for p in progress
            ]
            history = await self._consent_history(session, identities) if request.kind == "access" else []
            started_at = request.started_at or _now()

        async def target(system: str, manifest: Manifest) -> AsyncEngine:
            return await self.targets.engine(system, manifest.connection)

        return RequestRun(
            request_id=request.id,
            kind=request.kind,
            attempt=claim.attempt,
            started_at=started_at,
            dry_run=request.dry_run,
            subject_ref=request.subject_ref,
            identities=identities,
            tenant=tenant,
            changes=changes,
            systems=systems,
            consent_history=history,
            settings=self.settings,
            progress=fence,
            targets=target,
        )

    async def _run_with_heartbeat(
        self, handler: RequestHandler, run: RequestRun, fence: _Fence
    ) -> RequestOutcome:
        """Run the engine while a heartbeat extends the lease; a lost lease cancels the engine."""
        main = asyncio.current_task()
        interval = max(self.settings.worker_lease_seconds / 3, 0.2)

        async def beat() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await fence.heartbeat()
                except LeaseLost:
                    if main is not None:
                        main.cancel()
                    return
                except (SQLAlchemyError, OSError) as exc:
                    logger.warning("heartbeat failed", extra={"error_type": type(exc).__name__})

        beating = asyncio.create_task(beat())
        try:
            return await handler(run)
        except asyncio.CancelledError:
            if fence.lost and main is not None:
                main.uncancel()
                raise LeaseLost(f"request {run.request_id} was taken over") from None
            raise
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

    async def process(self, claim: Claim) -> str:
        """Carry out a claimed request; returns ``completed``, ``failed`` or ``lost``."""
        fence = _Fence(self.sessions, claim, self.settings.worker_lease_seconds)
        try:
            run = await self._build_run(claim, fence)
            handler = handler_for(claim.kind)
            outcome = await self._run_with_heartbeat(handler, run, fence)
            await self._complete(claim, fence, outcome)
        except LeaseLost:
            logger.warning(
                "lease lost", extra={"request_id": str(claim.request_id), "attempt": claim.attempt}
            )
            return "lost"
        except RequestFailed as exc:
            return await self._fail(claim, fence, exc.reason, exc.system)
        except LetheError as exc:
            return await self._fail(claim, fence, exc.detail, exc.extra.get("system"))
        except (SQLAlchemyError, OSError) as exc:
            return await self._fail(claim, fence, f"database error ({type(exc).__name__})", None)
        except Exception as exc:
            logger.exception("request failed unexpectedly", extra={"request_id": str(claim.request_id)})
            return await self._fail(claim, fence, f"unexpected error ({type(exc).__name__})", None)
        return "completed"

    async def _complete(self, claim: Claim, fence: _Fence, outcome: RequestOutcome) -> None:
        async with self.sessions() as session, session.begin():
            now = await fence.fence(session)
            values: dict[str, Any] = {
                "status": "completed",
                "completed_at": now,
                "identities_encrypted": None,
                "changes_encrypted": None,
                "lease_owner": None,
                "lease_expires_at": None,
                "updated_at": now,
            }
            if outcome.artifact:
                values.update(
                    artifact_attempt=claim.attempt, artifact_expires_at=now + artifact_ttl(self.settings)
                )
            await session.execute(
                update(SubjectRequest).where(SubjectRequest.id == claim.request_id).values(**values)
            )
            request = await session.get(SubjectRequest, claim.request_id)
            assert request is not None  # noqa: S101 - fenced above
            await audit.append(
                session,
                action="request.completed",
                actor=WORKER_ACTOR,
                request_id=str(claim.request_id),
                subject_ref=request.subject_ref,
                payload={
                    "kind": claim.kind,
                    "from": "running",
                    "to": "completed",
                    "attempt": claim.attempt,
                    **dict(outcome.audit),
                },
            )
            received_at = request.received_at
        observe_completion(claim.kind, received_at, now)
        if outcome.artifact:
            _remove_artifacts(Path(self.settings.artifacts_dir), claim.request_id, keep=claim.attempt)

    async def _fail(self, claim: Claim, fence: _Fence, reason: str, system: str | None) -> str:
        reason = reason[:500]
        try:
            async with self.sessions() as session, session.begin():
                now = await fence.fence(session)
                await session.execute(
                    update(SubjectRequest)
                    .where(SubjectRequest.id == claim.request_id)
                    .values(
                        status="failed",
                        failure_reason=reason,
                        completed_at=now,
                        identities_encrypted=None,
                        changes_encrypted=None,
                        lease_owner=None,
                        lease_expires_at=None,
                        updated_at=now,
                    )
                )
                if system is not None:
                    await session.execute(
                        update(SubjectRequestSystem)
                        .where(
                            SubjectRequestSystem.request_id == claim.request_id,
                            SubjectRequestSystem.system == system,
                        )
                        .values(status="failed", error=reason, attempt=claim.attempt, updated_at=now)
                    )
                subject_ref = (
                    await session.execute(
                        select(SubjectRequest.subject_ref).where(SubjectRequest.id == claim.request_id)
                    )
                ).scalar_one()
                payload: dict[str, Any] = {
                    "kind": claim.kind,
                    "from": "running",
                    "to": "failed",
                    "attempt": claim.attempt,
                }
                await audit.append(
                    session,
                    action="request.failed",
                    actor=WORKER_ACTOR,
                    request_id=str(claim.request_id),
                    system=system,
                    subject_ref=subject_ref,
                    payload=payload,
                )
        except LeaseLost:
            return "lost"
        _remove_artifacts(Path(self.settings.artifacts_dir), claim.request_id, keep=None)
        return "failed"

    async def run_one(self) -> bool:
        """Claim and process one request; False when there was nothing to do."""
        claim = await self.claim()
        if claim is None:
            return False
        await self.process(claim)
        return True

    async def loop(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; idle polls every ``worker_poll_seconds``."""
        while not stop.is_set():
            try:
                busy = await self.run_one()
            except (SQLAlchemyError, OSError) as exc:
                logger.warning("worker cannot reach the store", extra={"error_type": type(exc).__name__})
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.settings.worker_poll_seconds)


def _remove_artifacts(directory: Path, request_id: uuid.UUID, keep: int | None) -> None:
    """Delete a request's artifact files, except those of attempt ``keep``."""
    if not directory.is_dir():
        return
    for path in directory.glob(f"{request_id}.*"):
        attempt = path.name.split(".")[1]
        if keep is None or attempt != str(keep):
            path.unlink(missing_ok=True)


async def purge_expired_artifacts(
    settings: Settings, store_engine: AsyncEngine, now: datetime | None = None
) -> int:
    """Delete expired export artifacts and record it (one audit event per request); returns how many."""
    now = now or _now()
    sessions = async_sessionmaker(store_engine, expire_on_commit=False)
    purged = 0
    async with sessions() as session, session.begin():
        expired = (
            await session.scalars(
                select(SubjectRequest)
                .where(
                    SubjectRequest.artifact_attempt.is_not(None), SubjectRequest.artifact_expires_at <= now
                )
                .with_for_update(skip_locked=True)
            )
        ).all()
        for request in expired:
            _remove_artifacts(Path(settings.artifacts_dir), request.id, keep=None)
            request.artifact_attempt = None
            request.updated_at = now
            await audit.append(
                session,
                action="request.export_purged",
                actor=WORKER_ACTOR,
                request_id=str(request.id),
                subject_ref=request.subject_ref,
                payload={"kind": request.kind},
            )
            purged += 1
    return purged


async def _housekeeping(settings: Settings, store_engine: AsyncEngine, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await purge_expired_artifacts(settings, store_engine)
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("artifact purge failed", extra={"error_type": type(exc).__name__})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=PURGE_INTERVAL.total_seconds())


async def refresh_gauges_forever(store_engine: AsyncEngine, stop: asyncio.Event) -> None:
    """Keep the request gauges current (every replica, workers or not)."""
    while not stop.is_set():
        try:
            await refresh_request_gauges(store_engine)
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("request gauges not refreshed", extra={"error_type": type(exc).__name__})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=GAUGE_INTERVAL_SECONDS)


async def run_workers(
    settings: Settings, store_engine: AsyncEngine, stop: asyncio.Event, targets: TargetRegistry | None = None
) -> None:
    """Run the configured number of workers (one on SQLite) and the artifact purge until ``stop``."""
    owned = targets is None
    targets = targets or TargetRegistry(settings)
    count = 1 if settings.is_sqlite else max(settings.worker_concurrency, 1)
    workers = [RequestWorker(settings, store_engine, targets, f"w{i}") for i in range(count)]
    try:
        await asyncio.gather(*(w.loop(stop) for w in workers), _housekeeping(settings, store_engine, stop))
    finally:
        if owned:
            await targets.dispose()


@contextlib.asynccontextmanager
async def background_tasks(
    settings: Settings, store_engine: AsyncEngine, targets: TargetRegistry | None = None
) -> AsyncIterator[None]:
    """The app's background work: request gauges always, workers when ``workers_enabled``."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(refresh_gauges_forever(store_engine, stop))]
    if settings.workers_enabled:
        tasks.append(asyncio.create_task(run_workers(settings, store_engine, stop, targets)))
    try:
        yield
    finally:
        stop.set()
        for task in tasks:
            try:
                await asyncio.wait_for(task, timeout=settings.worker_lease_seconds)
            except Exception as exc:
                logger.warning(
                    "background task ended with an error", extra={"error_type": type(exc).__name__}
                )
