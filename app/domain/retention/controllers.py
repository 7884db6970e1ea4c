"""``/v1/retention``: policies (read/write), runs on demand (dry or real), the run history."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, cast

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.retention import RetentionPolicyRecord, RetentionRun
from app.domain.retention import services
from app.domain.retention.schemas import (
    Action,
    FilterIn,
    FilterOut,
    PolicyIn,
    PolicyOut,
    PolicyPage,
    PolicyPatch,
    PolicySource,
    RunOut,
    RunPage,
    RunStatus,
    RunTrigger,
)
from app.lib.auth import Principal, requires
from app.lib.pagination import clamp_limit, decode_cursor, encode_cursor
from app.lib.params import PageCursor, PageLimit
from app.lib.problems import problem_responses

__all__ = ("RetentionController", "policy_out", "run_out")


def policy_out(record: RetentionPolicyRecord) -> PolicyOut:
    """The public view of a stored policy."""
    return PolicyOut(
        id=record.id,
        system=record.system,
        name=record.name,
        source=cast("PolicySource", record.source),
        manifest_version=record.manifest_version,
        table=record.table_name,
        age_column=record.age_column,
        older_than=record.older_than,
        action=cast("Action", record.action),
        soft_delete_column=record.soft_delete_column,
        filters=[FilterOut(column=f["column"], op=f["op"], value=f.get("value")) for f in record.filters],
        batch_size=record.batch_size,
        schedule=record.schedule,
        enabled=record.enabled,
        next_due_at=record.next_due_at,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def run_out(run: RetentionRun) -> RunOut:
    """The public view of a run (the keyset cursor stays internal)."""
    return RunOut(
        id=run.id,
        policy_id=run.policy_id,
        policy_name=run.policy_name,
        system=run.system,
        table=run.table_name,
        action=cast("Action", run.action),
        dry_run=run.dry_run,
        trigger=cast("RunTrigger", run.trigger),
        actor=run.actor,
        status=cast("RunStatus", run.status),
        cutoff=run.cutoff,
        rows=run.rows_affected,
        batches=run.batches,
        longest_batch_ms=run.longest_batch_ms,
        attempt=run.attempt,
        started_at=run.started_at,
        finished_at=run.finished_at,
        error=run.error,
        sql=run.sql,
    )


def _filters(filters: list[FilterIn]) -> list[dict[str, Any]]:
    return [{"column": f.column, "op": f.op, "value": f.value} for f in filters]


def _fields(data: PolicyIn) -> dict[str, Any]:
    return {
        "system": data.system,
        "name": data.name,
        "table_name": data.table,
        "age_column": data.age_column or "",
        "older_than": data.older_than,
        "action": data.action,
        "soft_delete_column": data.soft_delete_column,
        "filters": _filters(data.filters),
        "batch_size": data.batch_size,
        "schedule": data.schedule,
        "enabled": data.enabled,
    }


def _changes(data: PolicyPatch) -> dict[str, Any]:
    given = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
    if "table" in given:
        given["table_name"] = given.pop("table")
    if "filters" in given:
        given["filters"] = _filters(given["filters"])
    if given.get("age_column") is None and "age_column" in given:
        given["age_column"] = ""
    return given


class RetentionController(Controller):
    """Retention policies and their runs."""

    path = "/retention"
    tags = ["retention"]

    @get(
        "/policies",
        operation_id="ListRetentionPolicies",
        summary="Retention policies of every system",
        opt=requires("retention:read"),
        responses=problem_responses(401, 403, 422),
    )
    async def list_policies(
        self,
        db_session: NamedDependency[AsyncSession],
        state: State,
        system: Annotated[str | None, QueryParameter(description="only this system's policies")] = None,
        cursor: PageCursor = None,
        limit: PageLimit = None,
    ) -> PolicyPage:
        """Manifest policies are brought in step with the latest manifests first."""
        size = clamp_limit(limit, state.settings.max_page_size)
        after = decode_cursor(cursor, 2)
        await services.sync_manifest_policies(db_session)
        records = await services.list_policies(db_session, after, size, system)
        last = records[-1] if len(records) == size else None
        return PolicyPage(
            items=[policy_out(r) for r in records],
            next_cursor=encode_cursor(last.system, last.name) if last else None,
        )

    @post(
        "/policies",
        operation_id="CreateRetentionPolicy",
        summary="Add a retention policy (checked on the live target)",
        opt=requires("retention:write"),
        status_code=201,
        responses=problem_responses(400, 401, 403, 409, 413, 422, 503),
    )
    async def create_policy(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        data: JSONBody[PolicyIn],
    ) -> PolicyOut:
        """Refused (422, naming the field) without an age column, with an unknown table or column,
        or with an action the table cannot take (e.g. delete rows other tables reference)."""
        record = await services.create_policy(db_session, state.targets, _fields(data), request.user.sub)
        return policy_out(record)

    @patch(
        "/policies/{policy_id:uuid}",
        operation_id="UpdateRetentionPolicy",
        summary="Change an API policy (re-checked on the live target)",
        opt=requires("retention:write"),
        responses=problem_responses(400, 401, 403, 404, 409, 413, 422, 503),
    )
    async def update_policy(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        policy_id: FromPath[uuid.UUID],
        data: JSONBody[PolicyPatch],
    ) -> PolicyOut:
        """Policies that come from a manifest are changed in the manifest (409 here)."""
        record = await services.apply_patch(
            db_session, state.targets, policy_id, _changes(data), request.user.sub
        )
        return policy_out(record)

    @delete(
        "/policies/{policy_id:uuid}",
        operation_id="DeleteRetentionPolicy",
        summary="Remove an API policy (its runs stay)",
        opt=requires("retention:write"),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def delete_policy(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        policy_id: FromPath[uuid.UUID],
    ) -> None:
        """Manifest policies go away when the manifest stops declaring them (409 here)."""
        await services.delete_policy(db_session, policy_id, request.user.sub)

    @post(
        "/policies/{policy_id:uuid}/run",
        operation_id="RunRetentionPolicy",
        summary="Dry run (count and SQL) or real run of a policy",
        opt=requires("retention:run"),
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 422, 503),
    )
    async def run_policy(
        self,
        request: Request[Principal, Any, Any],
        state: State,
        policy_id: FromPath[uuid.UUID],
        dry_run: Annotated[bool, QueryParameter(description="true: count and show the SQL only")] = True,
    ) -> RunOut:
        """A real run works for up to ``LETHE_RETENTION_REQUEST_RUNTIME_SECONDS`` in keyset batches;
        if rows are left it answers ``incomplete`` and the scheduler resumes it with the same
        cut-off. 409 while another replica runs the policy."""
        runner = state.retention_runner
        if dry_run:
            return run_out(await runner.dry_run(policy_id, request.user.sub))
        run = await runner.run(
            policy_id,
            actor=request.user.sub,
            trigger="api",
            max_runtime=state.settings.retention_request_runtime_seconds,
        )
        return run_out(run)

    @get(
        "/runs",
        operation_id="ListRetentionRuns",
        summary="Runs, newest first, with progress",
        opt=requires("retention:read"),
        responses=problem_responses(401, 403, 422),
    )
    async def list_runs(
        self,
        db_session: NamedDependency[AsyncSession],
        state: State,
        policy_id: Annotated[uuid.UUID | None, QueryParameter(description="only runs of this policy")] = None,
        status: Annotated[RunStatus | None, QueryParameter(description="Only runs in this state.")] = None,
        cursor: PageCursor = None,
        limit: PageLimit = None,
    ) -> RunPage:
        """Each run shows its status, rows, batches and longest batch."""
        size = clamp_limit(limit, state.settings.max_page_size)
        after = decode_cursor(cursor, 2)
        runs = await services.list_runs(db_session, after, size, policy_id, status)
        last = runs[-1] if len(runs) == size else None
        return RunPage(
            items=[run_out(r) for r in runs],
            next_cursor=encode_cursor(last.started_at.isoformat(), str(last.id)) if last else None,
        )
