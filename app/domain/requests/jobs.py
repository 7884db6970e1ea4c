"""Request workers: claim with a lease, run the kind's engine, fence every write by attempt.

A worker claims one request at a time: ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (so
replicas never wait on each other), a conditional UPDATE on SQLite (one worker there). The claim
raises ``attempt`` and sets a lease that a heartbeat extends. Every later write (progress, audit,
completion) runs ``UPDATE ... WHERE id = :id AND attempt = :attempt`` first, in the same
transaction (see :mod:`app.domain.requests.leases`): once another worker has taken over an expired
lease, the old worker's writes match no row, it stops, and the newer attempt alone completes the
request (one completion event).

Engines are imported directly and dispatched per kind through :data:`HANDLERS`; each is
``async def handler(run: app.engine.runs.RequestRun) -> app.engine.runs.RequestOutcome``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.requests import SubjectRequest, SubjectRequestSystem
from app.db.store import read_without_transaction
from app.domain.audit import services as audit
from app.domain.audit.references import subject_reference
from app.domain.consent.services import consent_history
from app.domain.external.parts import clear_parts, external_sections
from app.domain.external.tasks import cancel_tasks, pending_tasks
from app.domain.recipients.services import record_recipients
from app.domain.requests.artifacts import remove_artifacts
from app.domain.requests.catalog import manifest_at
from app.domain.requests.housekeeping import GAUGE_INTERVAL_SECONDS, PURGE_INTERVAL, purge_expired_artifacts
from app.domain.requests.leases import WORKER_ACTOR, Claim, Fence, claim_next
from app.domain.requests.metrics import observe_completion, refresh_request_gauges, report_job
from app.domain.requests.queries import artifact_ttl
from app.domain.requests.services import decrypt_subject
from app.domain.requests.wakeup import listen_for_work, wait_for_work
from app.domain.webhooks.delivery import start_webhook_work
from app.domain.webhooks.outbox import announce_request
from app.engine.erasure import run_erasure
from app.engine.errors import EngineError
from app.engine.export import run_access
from app.engine.rectify import run_rectification
from app.engine.runs import (
    RequestHandler,
    RequestOutcome,
    RequestRun,
    SystemRun,
)
from app.engine.storage import artifact_store
from app.engine.targets import TargetRegistry
from app.lib.clock import utcnow
from app.lib.errors import LetheError, TargetUnavailable, connection_dropped
from app.lib.leases import LeaseLost, hold, owner_id
from app.lib.logging import get_logger
from app.lib.loops import LoopWatch
from app.manifest.model import Manifest

__all__ = ("HANDLERS", "RequestWorker", "drain", "run_workers", "start_request_work", "worker_count")

logger = get_logger("lethe.workers")

HANDLERS: dict[str, RequestHandler] = {
    "access": run_access,
    "rectification": run_rectification,
    "erasure": run_erasure,
}
"""Request kind -> its engine (``async def handler(run: RequestRun) -> RequestOutcome``)."""


class RequestWorker:
    """One worker: claims a request, runs its engine under a heartbeat, completes or fails it."""

    def __init__(
        self, settings: Settings, store_engine: AsyncEngine, targets: TargetRegistry, name: str
    ) -> None:
        self.settings = settings
        self.sessions = async_sessionmaker(store_engine, expire_on_commit=False)
        self.targets = targets
        self.owner = owner_id(name)

    async def claim(self) -> Claim | None:
        """Take the oldest ready request (see :func:`app.domain.requests.leases.claim_next`)."""
        return await claim_next(self.sessions, self.owner, self.settings.worker_lease_seconds)

    async def _consent_history(
        self, session: AsyncSession, identities: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        key = self.settings.audit_key or ""
        refs = sorted({subject_reference(key, None, name, value) for name, value in identities.items()})
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

    async def _build_run(
        self, claim: Claim, fence: Fence, *, external_done: bool = False
    ) -> RequestRun | None:
        """Everything the engine needs, read in autocommit (each read sees committed rows; the
        claim's lease keeps them from changing under it). None for an access request with an
        external system yet to report (unless ``external_done``): see :meth:`_await_systems`."""
        async with self.sessions() as session:
            await read_without_transaction(session)
            request = await session.get(SubjectRequest, claim.request_id)
            if request is None:
                raise LeaseLost(f"request {claim.request_id} disappeared")
            if (
                claim.kind == "access"
                and request.holds_tasks
                and not external_done
                and await pending_tasks(session, claim.request_id)
            ):
                return None
            identities, tenant, changes = decrypt_subject(self.settings, request)
            progress = (await session.scalars(SubjectRequestSystem.of_request(claim.request_id))).all()
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
            external = (
                await external_sections(session, self.settings, request.id)
                if request.kind == "access" and request.holds_tasks
                else []
            )
            started_at = request.started_at or utcnow()

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
            reflections=self.targets.reflections,
            external=external,
            holds_tasks=request.holds_tasks,
        )

    async def _run_with_heartbeat(
        self, handler: RequestHandler, run: RequestRun, fence: Fence
    ) -> RequestOutcome:
        """Run the engine while a heartbeat extends the lease; a lost lease cancels the engine."""
        return await hold(
            handler(run),
            fence.heartbeat,
            every=max(self.settings.worker_lease_seconds / 3, 0.2),
            lost=lambda: fence.lost,
        )

    async def process(self, claim: Claim) -> str:
        """Carry out a claimed request; returns ``completed``, ``failed``, ``deferred``,
        ``awaiting_systems`` or ``lost``."""
        fence = Fence(self.sessions, claim, self.settings.worker_lease_seconds, artifact_store(self.settings))
        try:
            run = await self._build_run(claim, fence)
            if run is None:  # an external system has not reported: check again under the fence
                if await self._await_systems(claim, fence):
                    return "awaiting_systems"
                run = await self._build_run(claim, fence, external_done=True)
                assert run is not None  # noqa: S101 - built whatever the tasks say
            handler = HANDLERS[claim.kind]
            outcome = await self._run_with_heartbeat(handler, run, fence)
            await self._complete(claim, fence, outcome, run)
        except LeaseLost:
            logger.warning("lease lost", request_id=str(claim.request_id), attempt=claim.attempt)
            return "lost"
        except Exception as exc:  # every failure ends the attempt cleanly (see _settle_error)
            return await self._settle_error(claim, fence, exc)
        return "completed"

    async def _await_systems(self, claim: Claim, fence: Fence) -> bool:
        """An access export is assembled once, with every external system's part: while one has
        not reported, put the request in ``awaiting_systems`` without exporting (the last report
        queues it again) and return True."""
        async with self.sessions() as session, session.begin():
            now = await fence.fence(session)
            if await pending_tasks(session, claim.request_id) == 0:
                return False
            await session.execute(
                update(SubjectRequest)
                .where(SubjectRequest.id == claim.request_id)
                .values(status="awaiting_systems", lease_owner=None, lease_expires_at=None, updated_at=now)
            )
            await audit.append(
                session,
                action="request.awaiting_systems",
                actor=WORKER_ACTOR,
                request_id=str(claim.request_id),
                subject_ref=await _subject_ref(session, claim.request_id),
                payload={
                    "kind": claim.kind,
                    "from": "running",
                    "to": "awaiting_systems",
                    "attempt": claim.attempt,
                },
            )
        return True

    async def _settle_error(self, claim: Claim, fence: Fence, exc: Exception) -> str:
        """Fail the request with a reason free of personal data, or defer it while a target is down."""
        system: str | None = None
        if claim.attempt < self.settings.worker_max_attempts:
            if isinstance(exc, TargetUnavailable):
                return await self._defer(claim, fence, exc.extra.get("system"), "target_unavailable")
            if connection_dropped(exc):  # the store restarted or failed over under the run
                return await self._defer(claim, fence, None, "store_connection_lost")
        if isinstance(exc, EngineError):  # RequestFailed and every other engine error
            reason, system = exc.detail, exc.system
        elif isinstance(exc, LetheError):
            reason, system = exc.detail, exc.extra.get("system")
        elif isinstance(exc, SQLAlchemyError | OSError):
            reason = f"database error ({type(exc).__name__})"  # driver messages may hold values
        else:
            logger.error(  # the type only: an exception's text may carry values from a target
                "request failed unexpectedly",
                request_id=str(claim.request_id),
                error_type=type(exc).__name__,
            )
            reason = f"unexpected error ({type(exc).__name__})"
        return await self._fail(claim, fence, reason, system)

    async def _complete(self, claim: Claim, fence: Fence, outcome: RequestOutcome, run: RequestRun) -> None:
        """Complete the request, or leave it ``awaiting_systems`` while an external system has not
        reported."""
        # An access request runs once no external task is pending (checked by _build_run) and its
        # parts are those of the completed tasks, read into the run: none, none to clear.
        access = claim.kind == "access"
        may_wait = run.holds_tasks and not access
        parts = run.holds_tasks and (not access or bool(run.external))
        async with self.sessions() as session, session.begin():
            now = await fence.fence(session)
            waiting = may_wait and await pending_tasks(session, claim.request_id) > 0
            values: dict[str, Any] = {
                "status": "awaiting_systems" if waiting else "completed",
                "lease_owner": None,
                "lease_expires_at": None,
                "updated_at": now,
            }
            if not waiting:
                values.update(completed_at=now, identities_encrypted=None, changes_encrypted=None)
                if parts:
                    await clear_parts(session, claim.request_id)  # assembled into the export
            if outcome.artifact:
                values.update(
                    artifact_attempt=claim.attempt, artifact_expires_at=now + artifact_ttl(self.settings)
                )
            request = (
                await session.scalars(
                    update(SubjectRequest)
                    .where(SubjectRequest.id == claim.request_id)
                    .values(**values)
                    .returning(SubjectRequest)
                )
            ).one()  # fenced above
            await audit.append(
                session,
                action="request.awaiting_systems" if waiting else "request.completed",
                actor=WORKER_ACTOR,
                request_id=str(claim.request_id),
                subject_ref=request.subject_ref,
                payload={
                    "kind": claim.kind,
                    "from": "running",
                    "to": values["status"],
                    "attempt": claim.attempt,
                    **dict(outcome.audit),
                },
            )
            if not waiting:  # else the last external system's report completes it
                await record_recipients(session, request, now)
                ready = ("export.ready",) if outcome.artifact else ()
                await announce_request(session, request, "request.completed", *ready)
            received_at = request.received_at
        if not waiting:
            observe_completion(claim.kind, received_at, now)
        if outcome.artifact:
            await remove_artifacts(self.settings, claim.request_id, claim.attempt, keep=claim.attempt)

    async def _defer(self, claim: Claim, fence: Fence, system: str | None, reason: str) -> str:
        """A target is down, or a store connection was lost mid-run: leave the request running
        with no owner until the lease runs out (``reason`` goes to the audit event).

        Another worker (or this one) resumes it then, from its saved progress; after
        ``worker_max_attempts`` claims the request fails instead.
        """
        try:
            async with self.sessions() as session, session.begin():
                await fence.fence(session)
                subject_ref = await _subject_ref(session, claim.request_id)
                await session.execute(
                    update(SubjectRequest)
                    .where(SubjectRequest.id == claim.request_id)
                    .values(lease_owner=None)
                )
                await audit.append(
                    session,
                    action="request.deferred",
                    actor=WORKER_ACTOR,
                    request_id=str(claim.request_id),
                    system=system,
                    subject_ref=subject_ref,
                    payload={"kind": claim.kind, "attempt": claim.attempt, "reason": reason},
                )
        except LeaseLost:
            return "lost"
        await remove_artifacts(self.settings, claim.request_id, claim.attempt, keep=None)
        return "deferred"

    async def _fail(self, claim: Claim, fence: Fence, reason: str, system: str | None) -> str:
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
                failed = await session.get(SubjectRequest, claim.request_id, populate_existing=True)
                assert failed is not None  # noqa: S101 - fenced above
                if failed.holds_tasks:
                    await clear_parts(session, claim.request_id)
                await cancel_tasks(session, failed, now)
                subject_ref = failed.subject_ref
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
                await announce_request(session, failed, "request.failed", failure_reason=reason)
        except LeaseLost:
            return "lost"
        await remove_artifacts(self.settings, claim.request_id, claim.attempt, keep=None)
        return "failed"

    async def run_one(self) -> bool:
        """Claim and process one request; False when there was nothing to do."""
        claim = await self.claim()
        if claim is None:
            return False
        started = time.perf_counter()
        outcome = await self.process(claim)
        seconds = time.perf_counter() - started
        await report_job(self.sessions, claim.request_id, claim.kind, claim.attempt, outcome, seconds)
        return True

    async def loop(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; idle, wait for a queued request's wake-up (or the next poll,
        every ``worker_poll_seconds``)."""
        while not stop.is_set():
            try:
                busy = await self.run_one()
            except (SQLAlchemyError, OSError) as exc:
                logger.warning("worker cannot reach the store", error_type=type(exc).__name__)
                busy = False
            if not busy:
                await wait_for_work(stop, self.settings.worker_poll_seconds)


async def _subject_ref(session: AsyncSession, request_id: uuid.UUID) -> str:
    """The request's pseudonymous subject reference (for its audit events)."""
    ref: str = (
        await session.execute(select(SubjectRequest.subject_ref).where(SubjectRequest.id == request_id))
    ).scalar_one()
    return ref


def worker_count(settings: Settings) -> int:
    """Requests one process works on at once: ``worker_concurrency``, one on a SQLite store."""
    return 1 if settings.is_sqlite else max(settings.worker_concurrency, 1)


async def drain(workers: Sequence[RequestWorker]) -> None:
    """Run ``workers`` side by side until none finds a ready request (``lethe worker --once``)."""

    async def one(worker: RequestWorker) -> None:
        while await worker.run_one():
            pass

    await asyncio.gather(*(one(worker) for worker in workers))


def start_request_work(
    loops: LoopWatch, settings: Settings, store_engine: AsyncEngine, targets: TargetRegistry
) -> None:
    """Start this process's request work on ``loops``: the request gauges always; with
    ``workers_enabled``, the workers (one on SQLite), the wake-up listener, the artifact purge and
    the webhook delivery workers.

    Workers are graceful: at shutdown each finishes the request it holds (within the grace of
    ``loops``), then returns.
    """
    loops.every("request-gauges", GAUGE_INTERVAL_SECONDS, lambda: refresh_request_gauges(store_engine))
    if not settings.workers_enabled:
        return
    for i in range(worker_count(settings)):
        worker = RequestWorker(settings, store_engine, targets, f"w{i}")
        loops.start(f"request-worker-{i}", partial(worker.loop, loops.stopping), graceful=True)
    loops.start("request-wakeup", partial(listen_for_work, store_engine, loops.stopping), graceful=True)
    loops.every(
        "export-purge",
        PURGE_INTERVAL.total_seconds(),
        partial(purge_expired_artifacts, settings, store_engine),
    )
    start_webhook_work(loops, settings, store_engine)


async def run_workers(
    settings: Settings, store_engine: AsyncEngine, stop: asyncio.Event, targets: TargetRegistry | None = None
) -> None:
    """Run the request work of :func:`start_request_work` until ``stop`` (``lethe worker``)."""
    owned = targets is None
    targets = targets or TargetRegistry(settings)
    loops = LoopWatch(grace_seconds=settings.worker_lease_seconds)
    try:
        start_request_work(loops, settings, store_engine, targets)
        await stop.wait()
    finally:
        await loops.stop()
        if owned:
            await targets.dispose()
