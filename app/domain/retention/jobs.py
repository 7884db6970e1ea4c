"""Running retention policies: leases, resumable runs, audit events, and the scheduler loop.

A policy is leased (:mod:`app.lib.leases`, by owner) while one replica runs it; its run's
``attempt`` fences progress writes. A dead replica's run is resumed once the policy's lease, as
its holder stored it, has run out, whatever lease the resuming process is configured with.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.retention import RetentionPolicyRecord, RetentionRun
from app.domain.audit.services import append
from app.domain.retention.metrics import RETENTION_ROWS, observe_run
from app.domain.retention.services import (
    get_policy,
    latest_manifest,
    next_window,
    purge_policy,
    sync_manifest_policies,
)
from app.domain.webhooks.operators import announce_retention_failure
from app.engine.retention import (
    BatchLimits,
    BatchReport,
    PurgePolicy,
    PurgeStalled,
    compute_cutoff,
    dry_run,
    json_cursor,
    prepare_purge,
    purge_in_batches,
    restore_cursor,
)
from app.engine.targets import TargetRegistry
from app.lib.clock import utcnow
from app.lib.errors import Conflict, LetheError, TargetUnavailable, ValidationFailed
from app.lib.leases import Holder, LeaseLost, LeaseTable, owner_id
from app.lib.logging import get_logger
from app.lib.loops import LoopWatch
from app.manifest.model import Manifest

__all__ = ("POLICY_LEASE", "RetentionRunner", "RetentionScheduler", "start_retention")

logger = get_logger("lethe.retention")
UNFINISHED = ("running", "incomplete")
BatchObserver = Callable[[BatchReport], Awaitable[None]]


POLICY_LEASE = LeaseTable(
    key=RetentionPolicyRecord.id,
    owner=RetentionPolicyRecord.lease_owner,
    expires_at=RetentionPolicyRecord.lease_until,
)
"""Where a retention policy keeps its lease (fenced by owner; the run's ``attempt`` fences progress)."""


class RetentionRunner:
    """Runs policies for one replica (``owner``): dry runs, real runs, and what is due.

    A real run first claims the policy's lease with a conditional UPDATE (one holder at a time,
    on SQLite and PostgreSQL alike), resumes the policy's unfinished run if there is one (same
    cut-off, from its persisted cursor) or starts a new one, and records progress after every
    committed batch. Its end (completed, incomplete, failed) is one audit event with the counts.
    """

    def __init__(
        self,
        store_engine: AsyncEngine,
        targets: TargetRegistry,
        settings: Settings,
        owner: str | None = None,
    ) -> None:
        self._sessions = async_sessionmaker(store_engine, expire_on_commit=False)
        self._targets = targets
        self._settings = settings
        self.owner = owner or owner_id(uuid.uuid4().hex[:8])

    def _holder(self, policy_id: uuid.UUID) -> Holder:
        return Holder(key=policy_id, owner=self.owner)

    def _limits(self, max_runtime: float) -> BatchLimits:
        return BatchLimits(
            lock_timeout_ms=self._settings.retention_lock_timeout_ms,
            statement_timeout_ms=int(self._settings.retention_statement_timeout_seconds * 1000),
            max_runtime_seconds=max_runtime,
        )

    # --- entry points ----------------------------------------------------------------------

    async def dry_run(self, policy_id: uuid.UUID, actor: str) -> RetentionRun:
        """Count what a run would purge now and show the SQL; recorded and audited, nothing changed.

        Raises:
            NotFound, ValidationFailed, TargetUnavailable.
        """
        policy, manifest, now = *(await self._load(policy_id)), utcnow()
        cutoff = compute_cutoff(policy.older_than, now)
        async with self._targets.connect(manifest.system, manifest.connection) as connection:
            prepared = await prepare_purge(connection, self._policy(policy, manifest))
            result = await dry_run(connection, prepared, cutoff)
        run = _new_run(policy, actor=actor, trigger="api", now=now, cutoff=cutoff, dry=True, owner=self.owner)
        run.rows_affected, run.sql, run.status, run.finished_at = result.count, result.sql, "completed", now
        async with self._sessions.begin() as session:
            session.add(run)
            await session.flush()
            await _audit_run(session, run)
        observe_run(run)
        return run

    async def run(
        self,
        policy_id: uuid.UUID,
        *,
        actor: str,
        trigger: str,
        max_runtime: float | None = None,
        observer: BatchObserver | None = None,
    ) -> RetentionRun:
        """Run (or resume) a policy now, for at most ``max_runtime`` seconds.

        Raises:
            Conflict: another replica or request is running this policy.
            NotFound, ValidationFailed, TargetUnavailable: before any run is recorded.
        """
        if not await self._claim(policy_id, window=False):
            raise Conflict(f"retention policy {policy_id} is being run elsewhere; see GET /v1/retention/runs")
        try:
            return await self._run_claimed(policy_id, actor, trigger, max_runtime, observer)
        finally:
            await self._release(policy_id)

    async def run_due(self, actor: str = "system:retention") -> list[RetentionRun]:
        """Sync manifest policies, then run each policy whose window opened or whose run is unfinished.

        Every candidate is claimed with a conditional UPDATE first, so when several replicas (or
        CronJob pods) call this together each policy runs exactly once per window.
        """
        await self.sync()
        runs: list[RetentionRun] = []
        for policy_id, by_window in await self._candidates():
            if not await self._claim(policy_id, window=by_window):
                continue
            try:
                runs.append(await self._run_claimed(policy_id, actor, "schedule", None, None))
            except ValidationFailed as refusal:  # the table changed under the policy: make it visible
                runs.append(await self._record_failure(policy_id, actor, refusal.detail))
            except (TargetUnavailable, OSError) as error:  # transient: the next window retries
                logger.warning("retention policy could not run", reason=type(error).__name__)
            except Exception as error:
                logger.warning("retention policy failed", reason=type(error).__name__)
                runs.append(await self._record_failure(policy_id, actor, _reason(error)))
            finally:
                await self._release(policy_id)
        return runs

    async def sync(self) -> int:
        """Bring manifest-sourced policies in step with the latest manifests (own transaction)."""
        async with self._sessions.begin() as session:
            return await sync_manifest_policies(session)

    # --- leases and windows ----------------------------------------------------------------

    async def _candidates(self) -> list[tuple[uuid.UUID, bool]]:
        now = utcnow()
        async with self._sessions() as session:
            due = await session.scalars(
                select(RetentionPolicyRecord.id).where(
                    RetentionPolicyRecord.enabled.is_(True),
                    RetentionPolicyRecord.next_due_at <= now,
                )
            )
            unfinished = await session.scalars(  # a running run is resumable once its lease ran out
                select(RetentionRun.policy_id)
                .join(RetentionPolicyRecord, RetentionPolicyRecord.id == RetentionRun.policy_id)
                .where(
                    RetentionRun.dry_run.is_(False),
                    (RetentionRun.status == "incomplete")
                    | ((RetentionRun.status == "running") & POLICY_LEASE.free(now)),
                )
            )
            by_window = list(dict.fromkeys(due.all()))
            resumable = [p for p in dict.fromkeys(unfinished.all()) if p is not None and p not in by_window]
        return [(p, True) for p in by_window] + [(p, False) for p in resumable]

    async def _claim(self, policy_id: uuid.UUID, *, window: bool) -> bool:
        """Take the policy's lease (and, for a scheduled run, its current window) or return False."""
        now = utcnow()
        async with self._sessions.begin() as session:
            where, values = [], {}
            if window:
                record = await session.get(RetentionPolicyRecord, policy_id)
                if record is None or not record.schedule or record.next_due_at is None:
                    return False
                where = [
                    RetentionPolicyRecord.enabled.is_(True),
                    RetentionPolicyRecord.next_due_at == record.next_due_at,
                    RetentionPolicyRecord.next_due_at <= now,
                ]
                values = {"next_due_at": next_window(record.schedule, now)}
            holder = await POLICY_LEASE.acquire(
                session,
                policy_id,
                owner=self.owner,
                seconds=self._settings.retention_lease_seconds,
                where=where,
                values=values,
                now=now,
            )
            return holder is not None

    async def _release(self, policy_id: uuid.UUID) -> None:
        async with self._sessions.begin() as session:
            await POLICY_LEASE.release(session, self._holder(policy_id))

    # --- one run ---------------------------------------------------------------------------

    def _policy(self, record: RetentionPolicyRecord, manifest: Manifest) -> PurgePolicy:
        return purge_policy(record, manifest, secret=self._settings.audit_key)

    async def _load(self, policy_id: uuid.UUID) -> tuple[RetentionPolicyRecord, Manifest]:
        async with self._sessions() as session:
            policy = await get_policy(session, policy_id)
            _, manifest = await latest_manifest(session, policy.system)
        return policy, manifest

    async def _run_claimed(
        self,
        policy_id: uuid.UUID,
        actor: str,
        trigger: str,
        max_runtime: float | None,
        observer: BatchObserver | None,
    ) -> RetentionRun:
        policy, manifest = await self._load(policy_id)
        async with self._targets.connect(manifest.system, manifest.connection) as connection:
            prepared = await prepare_purge(connection, self._policy(policy, manifest))
        run = await self._start_or_resume(policy, actor, trigger)
        budget = max_runtime if max_runtime is not None else self._settings.retention_max_runtime_seconds
        try:
            engine = await self._targets.engine(manifest.system, manifest.connection)
            outcome = await purge_in_batches(
                engine,
                prepared,
                cutoff=run.cutoff,
                purge_at=run.purge_at,
                cursor=restore_cursor(prepared, run.cursor),
                limits=self._limits(budget),
                on_batch=self._progress(run, policy_id, observer),
            )
        except LeaseLost:
            return run
        except (PurgeStalled, TargetUnavailable, DBAPIError, OSError) as error:
            return await self._finish(run, "incomplete", _reason(error))
        return await self._finish(run, "completed" if outcome.finished else "incomplete", None)

    async def _record_failure(self, policy_id: uuid.UUID, actor: str, reason: str) -> RetentionRun:
        """A scheduled run that could not run: a ``failed`` run with the reason, and its audit event."""
        now = utcnow()
        async with self._sessions.begin() as session:
            policy = await get_policy(session, policy_id)
            run = _new_run(policy, actor=actor, trigger="schedule", now=now, cutoff=now, owner=self.owner)
            run.status, run.error, run.finished_at = "failed", reason[:500], now
            session.add(run)
            await session.flush()
            await _audit_run(session, run)
        observe_run(run)
        return run

    async def _start_or_resume(self, policy: RetentionPolicyRecord, actor: str, trigger: str) -> RetentionRun:
        now = utcnow()
        async with self._sessions.begin() as session:
            run = await session.scalar(
                select(RetentionRun)
                .where(
                    RetentionRun.policy_id == policy.id,
                    RetentionRun.dry_run.is_(False),
                    RetentionRun.status.in_(UNFINISHED),
                )
                .order_by(RetentionRun.started_at.desc())
                .limit(1)
            )
            if run is None:
                cutoff = compute_cutoff(policy.older_than, now)
                run = _new_run(policy, actor=actor, trigger=trigger, now=now, cutoff=cutoff, owner=self.owner)
                session.add(run)
            else:
                run.attempt += 1
                run.status, run.owner, run.heartbeat_at, run.error = "running", self.owner, now, None
        return run

    def _progress(
        self,
        run: RetentionRun,
        policy_id: uuid.UUID,
        observer: BatchObserver | None,
    ) -> BatchObserver:
        """After each committed batch: persist cursor and counts, extend the lease."""

        async def record(report: BatchReport) -> None:
            now = utcnow()
            run.rows_affected += report.rows
            run.batches += 1
            run.longest_batch_ms = max(run.longest_batch_ms, round(report.lock_seconds * 1000))
            if report.cursor:
                run.cursor = json_cursor(report.cursor)
            async with self._sessions.begin() as session:
                written = await session.execute(
                    update(RetentionRun)
                    .where(RetentionRun.id == run.id, RetentionRun.attempt == run.attempt)
                    .values(
                        rows_affected=run.rows_affected,
                        batches=run.batches,
                        longest_batch_ms=run.longest_batch_ms,
                        cursor=run.cursor,
                        heartbeat_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
                if written.rowcount != 1:  # type: ignore[attr-defined]
                    raise LeaseLost(f"retention run {run.id} attempt {run.attempt} was taken over")
                await POLICY_LEASE.renew(
                    session,
                    self._holder(policy_id),
                    seconds=self._settings.retention_lease_seconds,
                    now=now,
                )
            RETENTION_ROWS.labels(system=run.system, table=run.table_name, action=run.action).inc(report.rows)
            if observer is not None:
                await observer(report)

        return record

    async def _finish(self, run: RetentionRun, status: str, error: str | None) -> RetentionRun:
        now = utcnow()
        run.status, run.error, run.heartbeat_at = status, error, now
        run.finished_at = now if status in ("completed", "failed") else None
        async with self._sessions.begin() as session:
            written = await session.execute(
                update(RetentionRun)
                .where(RetentionRun.id == run.id, RetentionRun.attempt == run.attempt)
                .values(status=status, error=error, heartbeat_at=now, finished_at=run.finished_at)
                .execution_options(synchronize_session=False)
            )
            if written.rowcount == 1:  # type: ignore[attr-defined]
                await _audit_run(session, run)
                observe_run(run)
        return run


def _new_run(
    policy: RetentionPolicyRecord,
    *,
    actor: str,
    trigger: str,
    now: datetime,
    cutoff: datetime,
    owner: str,
    dry: bool = False,
) -> RetentionRun:
    return RetentionRun(
        id=uuid.uuid4(),
        policy_id=policy.id,
        policy_name=policy.name,
        system=policy.system,
        table_name=policy.table_name,
        action=policy.action,
        dry_run=dry,
        trigger=trigger,
        actor=actor,
        status="running",
        cutoff=cutoff,
        purge_at=now,
        cursor=None,
        rows_affected=0,
        batches=0,
        longest_batch_ms=0,
        attempt=1,
        owner=owner,
        heartbeat_at=now,
        started_at=now,
    )


def _reason(error: BaseException) -> str:
    """Why a run stopped, without the driver's message (it may quote row values)."""
    if isinstance(error, LetheError | PurgeStalled):
        return str(error)[:500]
    return f"{type(error).__name__} on the target"


async def _audit_run(session: AsyncSession, run: RetentionRun) -> None:
    """One audit event per run (segment): the counts, never a value."""
    await append(
        session,
        action="retention.dry_run" if run.dry_run else f"retention.run_{run.status}",
        actor=run.actor,
        system=run.system,
        payload={
            "policy": str(run.policy_id),
            "run": str(run.id),
            "table": run.table_name,
            "action": run.action,
            "trigger": run.trigger,
            "rows": run.rows_affected,
            "batches": run.batches,
            "longest_batch_ms": run.longest_batch_ms,
            "attempt": run.attempt,
        },
    )
    await announce_retention_failure(session, run)


class RetentionScheduler:
    """The in-service loop: every ``retention_poll_seconds``, run what is due (see ``run_due``)."""

    def __init__(self, runner: RetentionRunner, poll_seconds: float) -> None:
        self._runner = runner
        self._poll = poll_seconds

    async def serve(self) -> None:
        """Run until cancelled (application shutdown); a failing tick is logged, never fatal."""
        while True:
            try:
                await self._runner.run_due()
            except Exception as error:
                logger.warning("retention tick failed", reason=type(error).__name__)
            await asyncio.sleep(self._poll)


async def start_retention(loops: LoopWatch, runner: RetentionRunner, settings: Settings) -> None:
    """Start-up: sync manifest policies; with workers enabled, run the scheduler on ``loops``.

    The scheduler is cancelled at once on shutdown: an interrupted run keeps its cursor and is
    resumed after its lease runs out.
    """
    try:
        await runner.sync()
    except (SQLAlchemyError, OSError) as error:  # store not migrated or down: /readyz says so
        logger.warning("retention policies not synced at start-up", reason=type(error).__name__)
    if settings.workers_enabled:
        loops.start("retention-scheduler", RetentionScheduler(runner, settings.retention_poll_seconds).serve)
