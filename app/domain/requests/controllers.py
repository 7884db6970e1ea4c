"""``/v1/requests``: create data-subject requests, decide on them, follow them, download exports."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, cast

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Schema,
)
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.store import read_without_transaction, retry_if_dropped
from app.domain.external.tasks import task_views
from app.domain.recipients.services import recipient_views
from app.domain.requests import queries, services
from app.domain.requests.plans import request_plan
from app.domain.requests.schemas import (
    ErasurePlanOut,
    ExportFormat,
    ExtensionIn,
    RequestIn,
    RequestKind,
    RequestOut,
    RequestPage,
    RequestStatus,
)
from app.domain.webhooks.services import callback_secret
from app.engine.artifacts import read_frames
from app.engine.export import artifact_context
from app.lib.auth import Principal, requires
from app.lib.crypto import aes_key
from app.lib.errors import Unavailable
from app.lib.idempotency import IdempotencyKeyHeader, run_idempotent
from app.lib.pagination import clamp_limit, decode_time_cursor, encode_cursor
from app.lib.params import PageCursor, PageLimit, location
from app.lib.problems import problem_responses

__all__ = ("RequestController",)


@dataclass
class ExportDownload(Operation):
    """The export is a JSON document or a ZIP archive, chosen by ``format``."""

    def __post_init__(self) -> None:
        json_document = Schema(
            type=OpenAPIType.OBJECT,
            description="Per system and table, the subject's rows (`format=json`).",
        )
        archive = Schema(
            type=OpenAPIType.STRING,
            format=OpenAPIFormat.BINARY,
            content_media_type="application/zip",
            description="One CSV file per system and table (`format=zip`).",
        )
        self.responses = {
            **(self.responses or {}),
            "200": OpenAPIResponse(
                description="The export, decrypted on the fly; sent as an attachment.",
                content={
                    "application/zip": OpenAPIMediaType(schema=archive),
                    "application/json": OpenAPIMediaType(schema=json_document),
                },
            ),
        }


RequestId = Annotated[uuid.UUID, PathParameter(description="The request's id.")]


async def _view(session: AsyncSession, request_id: uuid.UUID, viewer: Principal) -> RequestOut:
    request, progress = await queries.get_request(session, request_id, viewer)
    tasks = await task_views(session, [request_id] if request.holds_tasks else [])
    # recipients are listed in the transaction that completes a request: none before that
    recipients = (
        (await recipient_views(session, [request_id]))[request_id] if request.status == "completed" else []
    )
    return msgspec.structs.replace(
        queries.request_out(request, progress),
        external_tasks=tasks.get(request_id, []),
        recipients=recipients,
    )


class RequestController(Controller):
    """Data-subject requests (Art. 15, 16, 17) and their legal deadlines."""

    path = "/requests"
    tags = ["requests"]

    @post(
        "/",
        operation_id="CreateRequest",
        summary="Submit a data-subject request",
        opt=requires("requests:write"),
        status_code=202,
        response_headers=[location("/v1/requests/{id}")],
        responses=problem_responses(401, 403, 409, 413, 422, 503),
    )
    async def create(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        data: JSONBody[RequestIn],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[RequestOut]:
        """The subject is looked up by the workers in each system; not found there is a valid answer."""
        principal = request.user

        async def produce() -> tuple[int, object, str | None]:
            created, progress = await services.create_request_rows(
                db_session, state.settings, principal, data
            )
            tasks = (await task_views(db_session, [created.id]))[created.id] if created.holds_tasks else []
            out = msgspec.structs.replace(queries.request_out(created, progress), external_tasks=tasks)
            if data.callback_url is not None:
                secret = await callback_secret(db_session, state.settings, created.id)
                out = msgspec.structs.replace(out, callback_secret=secret)
            return 202, out, f"/v1/requests/{created.id}"

        response = await retry_if_dropped(
            db_session,
            lambda: run_idempotent(
                session=db_session,
                client_id=principal.client_id,
                key=idempotency_key,
                operation="requests.create",
                body=data,
                produce=produce,
            ),
        )
        return cast("Response[RequestOut]", response)

    @get(
        "/",
        operation_id="ListRequests",
        summary="Requests, oldest first, with filters",
        opt=requires("requests:read"),
        responses=problem_responses(401, 403, 422),
    )
    async def list_requests(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        status: Annotated[
            RequestStatus | None, QueryParameter(description="Only requests in this state.")
        ] = None,
        kind: Annotated[RequestKind | None, QueryParameter(description="Only requests of this kind.")] = None,
        overdue: Annotated[
            bool | None, QueryParameter(description="true: past the deadline and not final.")
        ] = None,
        cursor: PageCursor = None,
        limit: PageLimit = None,
    ) -> RequestPage:
        """Overdue means not final and past the deadline in force (the extended one if extended)."""
        size = clamp_limit(limit, state.settings.max_page_size)
        page, last = await queries.list_requests(
            db_session,
            queries.ListFilter(status=status, kind=kind, overdue=overdue, viewer=request.user),
            after=decode_time_cursor(cursor),
            limit=size,
        )
        tasks = await task_views(db_session, [r.id for r, _ in page if r.holds_tasks])
        # as for one request: recipients are listed in the transaction that completes it
        recipients = await recipient_views(db_session, [r.id for r, _ in page if r.status == "completed"])
        return RequestPage(
            items=[
                msgspec.structs.replace(
                    queries.request_out(r, p),
                    external_tasks=tasks.get(r.id, []),
                    recipients=recipients.get(r.id, []),
                )
                for r, p in page
            ],
            next_cursor=encode_cursor(last[0].isoformat(), str(last[1])) if last else None,
        )

    @get(
        "/{request_id:uuid}",
        operation_id="GetRequest",
        summary="A request with per-system progress and counts",
        opt=requires("requests:read"),
        responses=problem_responses(401, 403, 404),
    )
    async def get_request(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        request_id: RequestId,
    ) -> RequestOut:
        """Counts are rows per table; ``not_found`` says the subject is unknown in that system."""

        async def view() -> RequestOut:
            await read_without_transaction(db_session)
            return await _view(db_session, request_id, request.user)

        return await retry_if_dropped(db_session, view)

    @get(
        "/{request_id:uuid}/plan",
        operation_id="GetErasurePlan",
        summary="The erasure plan: per system and table, strategy, rows affected and SQL",
        opt=requires("requests:read"),
        responses=problem_responses(401, 403, 404, 409, 503),
    )
    async def get_plan(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        request_id: RequestId,
    ) -> ErasurePlanOut:
        """Recorded when the request ran (or a dry run stopped at it); live before it runs."""
        return await request_plan(db_session, state.settings, state.targets, request_id, request.user)

    @post(
        "/{request_id:uuid}/approve",
        operation_id="ApproveRequest",
        summary="Release a request held for approval",
        opt=requires("requests:approve"),
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def approve(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        request_id: RequestId,
    ) -> RequestOut:
        """Only from ``awaiting_approval``; the request is then queued for the workers."""
        await services.decide(
            db_session, request_id, "approve", request.user, four_eyes=state.settings.approval_four_eyes
        )
        return await _view(db_session, request_id, request.user)

    @post(
        "/{request_id:uuid}/reject",
        operation_id="RejectRequest",
        summary="Refuse a request held for approval",
        opt=requires("requests:approve"),
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def reject(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        request_id: RequestId,
    ) -> RequestOut:
        """Final: the identities are wiped."""
        await services.decide(
            db_session, request_id, "reject", request.user, four_eyes=state.settings.approval_four_eyes
        )
        return await _view(db_session, request_id, request.user)

    @post(
        "/{request_id:uuid}/cancel",
        operation_id="CancelRequest",
        summary="Withdraw a request that has not started",
        opt=requires("requests:write"),
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def cancel(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        request_id: RequestId,
    ) -> RequestOut:
        """Possible while received, awaiting approval or queued; a running request finishes."""
        await services.decide(
            db_session, request_id, "cancel", request.user, four_eyes=state.settings.approval_four_eyes
        )
        return await _view(db_session, request_id, request.user)

    @post(
        "/{request_id:uuid}/extend",
        operation_id="ExtendRequest",
        summary="Extend the deadline by up to two months",
        opt=requires("requests:write"),
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def extend(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[ExtensionIn],
        request_id: RequestId,
    ) -> RequestOut:
        """Needs a reason; only before the first due date; at most two months beyond it."""
        await services.extend_request(db_session, request_id, data, request.user)
        return await _view(db_session, request_id, request.user)

    @get(
        "/{request_id:uuid}/export",
        operation_id="DownloadExport",
        summary="Download the access export (JSON document or ZIP of CSVs)",
        opt=requires("requests:read"),
        operation_class=ExportDownload,
        responses=problem_responses(401, 403, 404, 409, 410, 422),
    )
    async def export(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        request_id: RequestId,
        format: Annotated[
            ExportFormat, QueryParameter(description="`json`: one document; `zip`: one CSV per table.")
        ] = "json",
    ) -> Stream:
        """Decrypted on the fly, frame by frame; the artifact stays encrypted at rest."""
        subject_request, _ = await queries.get_request(db_session, request_id, request.user)
        if not state.settings.artifact_key:
            raise Unavailable("LETHE_ARTIFACT_KEY is not configured")
        key = aes_key(state.settings.artifact_key)
        reader = await queries.open_export(state.settings, subject_request, format)
        decrypted = read_frames(reader, key, artifact_context(str(request_id), format))

        async def frames() -> AsyncIterator[bytes]:
            # each frame is read off the event loop: the store may be a remote bucket
            try:
                while (frame := await asyncio.to_thread(next, decrypted, None)) is not None:
                    yield frame
            finally:
                with contextlib.suppress(ValueError):  # a frame still being read when cut off
                    decrypted.close()
                reader.close()

        media = "application/json" if format == "json" else "application/zip"
        filename = f"lethe-export-{request_id}.{format}"
        return Stream(
            frames(),
            media_type=media,
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "no-store",
            },
        )
