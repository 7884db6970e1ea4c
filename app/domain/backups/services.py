"""Backup health and restore tests (stored and audited); the replay of erasures is in
:mod:`app.domain.backups.replay`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.audit import ErasureTombstone
from app.db.backups import BackupRestoreTest
from app.db.requests import SubjectRequest
from app.domain.audit.services import append
from app.domain.backups.metrics import backup_metrics
from app.domain.manifests.services import ManifestService
from app.engine.backups import (
    BackupConfig,
    BackupHealth,
    SystemBackups,
    evaluate,
    list_dumps,
    load_backup_config,
)
from app.engine.restore import (
    RestoreExpectation,
    RestoreOutcome,
    key_hasher,
    restore_test,
)
from app.lib.clock import utcnow
from app.lib.errors import (
    ConfigurationError,
    Conflict,
    LetheError,
    NotFound,
    Unavailable,
    ValidationFailed,
    field_error,
)
from app.lib.logging import get_logger
from app.manifest.model import Manifest

__all__ = (
    "RestoreTestService",
    "ResurrectedSubject",
    "backup_config",
    "backup_metrics",
    "check_health",
    "expectation_of",
    "finish_restore_test",
    "refresh_restore_gauges",
    "resurrected_subjects",
    "run_restore_test",
    "start_restore_test",
    "tombstone_refs",
)

logger = get_logger("lethe.backups")


def backup_config(settings: Settings) -> BackupConfig:
    """The backup sources of ``LETHE_BACKUP_SOURCES`` (read on each use: operators edit it live).

    Raises:
        Unavailable: the file is unreadable or malformed (503 naming the key path).
    """
    try:
        return load_backup_config(settings.backup_sources)
    except ConfigurationError as error:
        raise Unavailable(f"backup sources unusable: {error}") from error


def _system(config: BackupConfig, system: str) -> SystemBackups:
    backups = config.systems.get(system)
    if backups is None:
        raise NotFound(f"no backup sources are configured for system '{system}'")
    return backups


async def check_health(settings: Settings) -> BackupHealth:
    """Evaluate every source now and publish the result as gauges."""
    health = await evaluate(
        backup_config(settings),
        default_rpo=settings.backup_rpo_seconds,
        command_timeout=settings.backup_command_timeout_seconds,
    )
    backup_metrics().observe_health(health)
    return health


async def refresh_restore_gauges(session: AsyncSession) -> dict[str, datetime]:
    """Last passed restore test per system, from the store, published as gauges."""
    rows = await session.execute(
        select(BackupRestoreTest.system, func.max(BackupRestoreTest.finished_at))
        .where(BackupRestoreTest.status == "passed")
        .group_by(BackupRestoreTest.system)
    )
    latest = {system: finished for system, finished in rows.all() if finished is not None}
    for system, finished in latest.items():
        backup_metrics().observe_restore_test(system, finished)
    return latest


class RestoreTestService(SQLAlchemyAsyncRepositoryService[BackupRestoreTest]):
    """Stored restore tests."""

    class Repo(SQLAlchemyAsyncRepository[BackupRestoreTest]):
        """Repository of restore tests."""

        model_type = BackupRestoreTest

    repository_type = Repo

    async def one(self, test_id: uuid.UUID) -> BackupRestoreTest:
        """The restore test ``test_id``.

        Raises:
            NotFound: there is no such test.
        """
        found: BackupRestoreTest | None = await self.repository.session.get(BackupRestoreTest, test_id)
        if found is None:
            raise NotFound(f"no restore test {test_id}")
        return found

    async def running(self, system: str) -> BackupRestoreTest | None:
        """The test of ``system`` still running, if any."""
        statement = select(BackupRestoreTest).where(
            BackupRestoreTest.system == system, BackupRestoreTest.status == "running"
        )
        found: BackupRestoreTest | None = (
            await self.repository.session.execute(statement.limit(1))
        ).scalar_one_or_none()
        return found


@dataclass(frozen=True, kw_only=True)
class ResurrectedSubject:
    """An erased subject a backup still holds, as requests and the audit log name it.

    ``subject_key_ref`` is the tombstone's reference of the subject key (carried by replay
    events); ``request_id`` and ``subject_ref`` are the erasure request that tombstoned it and that
    request's pseudonymous reference (what ``GET /v1/requests`` and audit events show). Both are
    None for a tombstone no request recorded.
    """

    subject_key_ref: str
    request_id: uuid.UUID | None
    subject_ref: str | None


def _request_id(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


async def resurrected_subjects(
    session: AsyncSession, system: str, refs: list[str]
) -> list[ResurrectedSubject]:
    """The erasure requests behind the tombstone references a restore test found, in ``refs`` order
    (the most recent erasure of a subject erased more than once)."""
    if not refs:
        return []
    tombstones = await session.execute(
        select(ErasureTombstone.subject_key_ref, ErasureTombstone.request_id)
        .where(ErasureTombstone.system == system, ErasureTombstone.subject_key_ref.in_(refs))
        .order_by(ErasureTombstone.erased_at)
    )
    by_ref = {ref: _request_id(request) for ref, request in tombstones.all()}
    ids = [i for i in by_ref.values() if i is not None]
    rows = await session.execute(
        select(SubjectRequest.id, SubjectRequest.subject_ref).where(SubjectRequest.id.in_(ids))
    )
    subject_refs = dict(rows.tuples().all())
    found = [(ref, by_ref.get(ref)) for ref in refs]
    return [
        ResurrectedSubject(
            subject_key_ref=ref,
            request_id=request,
            subject_ref=subject_refs.get(request) if request else None,
        )
        for ref, request in found
    ]


def expectation_of(manifest: Manifest) -> RestoreExpectation:
    """Every table of the manifest must be restored with rows; the subject key finds tombstones."""
    return RestoreExpectation(
        tables=manifest.managed_tables(),
        subject_table=manifest.subject.table,
        key_columns=manifest.subject.key_columns,
        schemas=manifest.connection.schemas,
    )


async def start_restore_test(
    session: AsyncSession, settings: Settings, system: str, actor: str
) -> BackupRestoreTest:
    """Record a ``running`` restore test after checking it can run; audited.

    Raises:
        NotFound: the system has no backup sources or no registered manifest.
        ValidationFailed: the system has no dump directory or no scratch server configured.
        Conflict: a restore test of the system is already running.
    """
    backups = _system(backup_config(settings), system)
    problems = []
    if backups.restore_source() is None:
        problems.append(field_error("system", "no `directory` source of pg_dump files"))
    if backups.scratch is None:
        problems.append(field_error("system", "no `scratch` server for scratch databases"))
    if problems:
        raise ValidationFailed(f"system '{system}' cannot be restore-tested", problems)
    await ManifestService(session=session).get_version(system)
    service = RestoreTestService(session=session)
    stale_after = settings.backup_restore_timeout_seconds * 2
    running = await service.running(system)
    if running is not None and (utcnow() - running.started_at).total_seconds() < stale_after:
        raise Conflict(f"restore test {running.id} of system '{system}' is still running")
    if running is not None:
        running.status, running.reason = "failed", "abandoned: the process running it stopped"
        running.finished_at = utcnow()
    row = BackupRestoreTest(
        id=uuid.uuid4(),
        system=system,
        status="running",
        requested_by=actor,
        started_at=utcnow(),
        tables={},
        resurrected_refs=[],
    )
    session.add(row)
    await session.flush()
    await append(
        session,
        action="backup.restore_test_started",
        actor=actor,
        system=system,
        payload={"restore_test": str(row.id)},
    )
    return row


async def tombstone_refs(session: AsyncSession, system: str, since: datetime | None = None) -> set[str]:
    statement = select(ErasureTombstone.subject_key_ref).where(ErasureTombstone.system == system)
    if since is not None:
        statement = statement.where(ErasureTombstone.erased_at >= since)
    return set((await session.scalars(statement)).all())


async def _perform(session: AsyncSession, settings: Settings, row: BackupRestoreTest) -> RestoreOutcome:
    backups = _system(backup_config(settings), row.system)
    source, scratch = backups.restore_source(), backups.scratch
    if source is None or scratch is None:
        raise ValidationFailed(f"system '{row.system}' lost its dump directory or scratch server")
    dumps = list_dumps(source)
    if not dumps:
        raise NotFound(f"no dump matching {source.pattern} in the dump directory of '{row.system}'")
    newest = dumps[0]
    row.dump_name, row.dump_size, row.dump_modified_at = newest.path.name, newest.size, newest.modified_at
    _, manifest = await ManifestService(session=session).current(row.system)
    audit_key = settings.audit_key
    if not audit_key:
        raise Unavailable("LETHE_AUDIT_KEY is not configured")
    refs = await tombstone_refs(session, row.system)
    return await restore_test(
        newest,
        scratch.url(),
        expectation_of(manifest),
        tombstone_refs=refs,
        reference=key_hasher(audit_key, row.system),
        time_limit=settings.backup_restore_timeout_seconds,
    )


def _record(row: BackupRestoreTest, outcome: RestoreOutcome) -> None:
    row.status = "passed" if outcome.passed else "failed"
    row.scratch_database, row.scratch_dropped = outcome.database, outcome.dropped
    row.restore_exit_code = outcome.restore_exit_code
    row.tables = dict(outcome.tables)
    row.resurrected_refs = list(outcome.resurrected_refs)
    row.resurrected_subjects = len(outcome.resurrected_refs)
    row.duration_seconds = outcome.duration_seconds
    if outcome.reason is not None:
        row.reason = outcome.reason
    elif outcome.missing_tables or outcome.empty_tables:
        row.reason = (
            f"{len(outcome.missing_tables)} manifest table(s) missing, "
            f"{len(outcome.empty_tables)} empty in the restored copy"
        )


async def finish_restore_test(session: AsyncSession, settings: Settings, row: BackupRestoreTest) -> None:
    """Run the restore of a recorded test and store its outcome; audited, never raises for a bad backup."""
    try:
        _record(row, await _perform(session, settings, row))
    except LetheError as error:
        row.status, row.reason = "failed", error.detail[:500]
    except ConfigurationError as error:
        row.status, row.reason = "failed", str(error)[:500]
    row.finished_at = utcnow()
    payload = {
        "restore_test": str(row.id),
        "status": row.status,
        "tables": len(row.tables),
        "missing_tables": sum(1 for v in row.tables.values() if v is None),
        "empty_tables": sum(1 for v in row.tables.values() if v == 0),
        "resurrected_subjects": row.resurrected_subjects or 0,
        "scratch_dropped": bool(row.scratch_dropped),
    }
    await append(
        session, action="backup.restore_tested", actor=row.requested_by, system=row.system, payload=payload
    )
    if row.status == "passed":
        backup_metrics().observe_restore_test(row.system, row.finished_at)
    logger.info(
        "restore test finished",
        system=row.system,
        restore_test=str(row.id),
        status=row.status,
    )


async def run_restore_test(engine: AsyncEngine, settings: Settings, test_id: uuid.UUID) -> None:
    """Background part of ``POST /v1/backups/restore-tests``: its own session and transaction."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with sessions() as session, session.begin():
            row = await RestoreTestService(session=session).one(test_id)
            await finish_restore_test(session, settings, row)
    except Exception as error:  # a background task has nobody to raise to: record the failure
        logger.error(  # noqa: TRY400 - a traceback could quote target rows
            "restore test crashed", restore_test=str(test_id), error=type(error).__name__
        )
        async with sessions() as session, session.begin():
            row = await RestoreTestService(session=session).one(test_id)
            row.status, row.reason = "failed", f"internal error: {type(error).__name__}"
            row.finished_at = utcnow()
