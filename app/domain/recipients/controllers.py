"""``/v1/requests/{id}/recipients/{name}/notified``: record that a recipient was told by hand."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.recipients import services
from app.domain.recipients.schemas import RecipientNotifiedIn, RecipientOut
from app.lib.auth import Principal, requires
from app.lib.problems import problem_responses

__all__ = ("RecipientController",)

RequestId = Annotated[uuid.UUID, PathParameter(description="The request's id.")]
RecipientName = Annotated[
    str, PathParameter(description="The recipient's name as the request lists it (URL-encoded).")
]


class RecipientController(Controller):
    """Art. 19 recipients of a completed rectification or erasure."""

    path = "/requests/{request_id:uuid}/recipients/{name:str}"
    tags = ["requests"]

    @post(
        "/notified",
        operation_id="RecordRecipientNotified",
        summary="Record that a recipient was told of a rectification or erasure by hand",
        opt=requires("requests:write"),
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 413, 422),
    )
    async def notified(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        request_id: RequestId,
        name: RecipientName,
        data: JSONBody[RecipientNotifiedIn],
    ) -> RecipientOut:
        """For a recipient listed ``manual`` (no subscription), ``failed`` or ``pending``: its
        status becomes ``notified`` (``via: manual``), audited as ``recipient.notified``. A
        recipient notified already answers 409."""
        return await services.record_notified(db_session, request_id, name, data, request.user)
