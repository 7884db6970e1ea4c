"""``/v1/backups``: health of every system's backups, and restore tests of the newest dump."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.backups import BackupRestoreTest
from app.domain.backups import services
from app.domain.backups.schemas import (
    BackupCheck,
    BackupHealthOut,
    RestoreTestIn,
    RestoreTestOut,
    ResurrectedSubjectOut,
    SystemHealthOut,
)
from app.engine.backups import BackupHealth
from app.lib.auth import Principal, requires
from app.lib.params import location
from app.lib.problems import problem_responses

__all__ = ("BackupController", "health_out", "restore_test_out")


def health_out(health: BackupHealth, restore_passed: dict[str, Any]) -> BackupHealthOut:
    """The API shape of an evaluation, with each system's last passed restore test."""
    systems = [
        SystemHealthOut(
            system=system.system,
            status=system.status,
            checks=[
                BackupCheck(
                    source=c.source,
                    kind=c.kind,
                    check=c.check,
                    status=c.status,
                    reason=c.reason,
                    newest_at=c.newest_at,
                    age_seconds=c.age_seconds,
                    size_bytes=c.size_bytes,
                )
                for c in system.checks
            ],
            last_passed_restore_test_at=restore_passed.get(system.system),
        )
        for system in health.systems
    ]
    return BackupHealthOut(status=health.status, checked_at=health.checked_at, systems=systems)


def restore_test_out(
    row: BackupRestoreTest, resurrected: Sequence[services.ResurrectedSubject] = ()
) -> RestoreTestOut:
    """The API shape of a stored restore test (``resurrected``: see ``services.resurrected_subjects``)."""
    tables = dict(row.tables or {})
    return RestoreTestOut(
        id=row.id,
        system=row.system,
        status=row.status,  # type: ignore[arg-type]
        requested_by=row.requested_by,
        started_at=row.started_at,
        finished_at=row.finished_at,
        dump_name=row.dump_name,
        dump_size=row.dump_size,
        dump_modified_at=row.dump_modified_at,
        scratch_database=row.scratch_database,
        scratch_dropped=row.scratch_dropped,
        restore_exit_code=row.restore_exit_code,
        tables=tables,
        missing_tables=[name for name, rows in tables.items() if rows is None],
        empty_tables=[name for name, rows in tables.items() if rows == 0],
        resurrected_subjects=row.resurrected_subjects,
        resurrected_refs=list(row.resurrected_refs or []),
        reason=row.reason,
        duration_seconds=row.duration_seconds,
        resurrected=[
            ResurrectedSubjectOut(
                subject_key_ref=r.subject_key_ref, request_id=r.request_id, subject_ref=r.subject_ref
            )
            for r in resurrected
        ],
    )


class BackupController(Controller):
    """Backup health (Art. 32(1)(c)) and restore tests."""

    path = "/backups"
    tags = ["backups"]

    @get(
        "/health",
        operation_id="GetBackupHealth",
        summary="Health of every system's backups",
        opt=requires("backups:read"),
        responses=problem_responses(401, 403, 503),
    )
    async def health(self, db_session: NamedDependency[AsyncSession], state: State) -> BackupHealthOut:
        """Checks every source now (freshness against the RPO, size trend, checksums, tool status).

        The HTTP status is 200 whatever the verdict: ``status`` carries it, so monitoring can
        tell a critical backup from an unreachable service.
        """
        health = await services.check_health(state.settings)
        passed = await services.refresh_restore_gauges(db_session)
        return health_out(health, passed)

    @post(
        "/restore-tests",
        operation_id="StartRestoreTest",
        summary="Restore the newest dump into a scratch database",
        opt=requires("backups:run"),
        status_code=HTTP_202_ACCEPTED,
        response_headers=[location("/v1/backups/restore-tests/{id}")],
        responses=problem_responses(401, 403, 404, 409, 422, 503),
    )
    async def start(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        data: JSONBody[RestoreTestIn],
    ) -> Response[RestoreTestOut]:
        """Accepted at once (202, ``running``); the restore runs in the background, bounded by
        ``LETHE_BACKUP_RESTORE_TIMEOUT_SECONDS``. Poll the ``Location`` for the outcome.
        """
        row = await services.start_restore_test(db_session, state.settings, data.system, request.user.sub)
        task = BackgroundTask(services.run_restore_test, state.store_engine, state.settings, row.id)
        return Response(
            restore_test_out(row),
            status_code=HTTP_202_ACCEPTED,
            background=task,
            headers={"Location": f"/v1/backups/restore-tests/{row.id}"},
        )

    @get(
        "/restore-tests/{test_id:uuid}",
        operation_id="GetRestoreTest",
        summary="One restore test",
        opt=requires("backups:read"),
        responses=problem_responses(401, 403, 404, 503),
    )
    async def get_restore_test(
        self, db_session: NamedDependency[AsyncSession], test_id: FromPath[uuid.UUID]
    ) -> RestoreTestOut:
        """What was restored, row counts per manifest table, and the erased subjects it holds
        (with the erasure request and the pseudonymous reference requests and audit show)."""
        row = await services.RestoreTestService(session=db_session).one(test_id)
        return restore_test_out(
            row, await services.resurrected_subjects(db_session, row.system, row.resurrected_refs)
        )
