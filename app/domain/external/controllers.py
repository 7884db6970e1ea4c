"""``/v1/requests/{id}/systems/{system}``: an external system reads its task's identities once
and reports the task done or failed."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.external import reports
from app.domain.external.schemas import TaskCompleteIn, TaskFailIn, TaskIdentitiesOut, TaskOut
from app.domain.external.tasks import task_views
from app.lib.auth import Principal, requires
from app.lib.problems import problem_responses

__all__ = ("ExternalTaskController",)

RequestId = Annotated[uuid.UUID, PathParameter(description="The request's id.")]
SystemName = Annotated[str, PathParameter(description="The external system (its manifest's `system`).")]


async def _view(session: AsyncSession, request_id: uuid.UUID, system: str) -> TaskOut:
    return next(t for t in (await task_views(session, [request_id]))[request_id] if t.system == system)


class ExternalTaskController(Controller):
    """Tasks of external systems (``kind: external`` manifests), for the task's owner."""

    path = "/requests/{request_id:uuid}/systems/{system:str}"
    tags = ["requests"]

    @get(
        "/identities",
        operation_id="ReadTaskIdentities",
        summary="The identities an external system needs, once",
        opt=requires("requests:write"),
        responses=problem_responses(401, 403, 404, 409, 410),
    )
    async def identities(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        request_id: RequestId,
        system: SystemName,
    ) -> TaskIdentitiesOut:
        """Only the task's owner (the notified subscription's client, else the request's), only
        once per task (a second read answers 409) and only within
        ``LETHE_EXTERNAL_IDENTITIES_TTL_SECONDS`` of the task's ``opened_at`` (later 410
        ``urn:lethe:problem:task-identities-expired``, the task can still be reported). For a
        rectification the answer also carries this system's ``changes``. Read them, act, forget
        them."""
        return await reports.read_identities(db_session, state.settings, request_id, system, request.user)

    @post(
        "/complete",
        operation_id="CompleteTask",
        summary="Report an external system's task done",
        opt=requires("requests:write"),
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 413, 422),
    )
    async def complete(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        request_id: RequestId,
        system: SystemName,
        data: JSONBody[TaskCompleteIn],
    ) -> TaskOut:
        """The last report, once every database system is done, completes the request. For an
        access request the report may carry an ``export_part``: it joins the subject's export,
        which a worker assembles once every system is done (413 beyond
        ``LETHE_EXTERNAL_EXPORT_PART_BYTES``, 422 on another kind of request)."""
        await reports.complete_task(db_session, state.settings, request_id, system, data, request.user)
        return await _view(db_session, request_id, system)

    @post(
        "/fail",
        operation_id="FailTask",
        summary="Report that an external system could not do its task",
        opt=requires("requests:write"),
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 413, 422),
    )
    async def fail(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        request_id: RequestId,
        system: SystemName,
        data: JSONBody[TaskFailIn],
    ) -> TaskOut:
        """The request fails with the reason (keep it free of personal data)."""
        await reports.fail_task(db_session, state.settings, request_id, system, data, request.user)
        return await _view(db_session, request_id, system)
