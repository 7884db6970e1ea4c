"""``/v1/webhooks``: subscriptions of the calling client, their deliveries, and redelivery."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.webhooks import services
from app.domain.webhooks.schemas import (
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPage,
    SubscriptionPatch,
)
from app.lib.auth import Principal, requires
from app.lib.pagination import clamp_limit, decode_time_cursor, encode_time_cursor
from app.lib.params import PageCursor, PageLimit, location
from app.lib.problems import problem_responses

__all__ = ("WebhookController",)

SubscriptionId = Annotated[uuid.UUID, PathParameter(description="The subscription's id.")]
DeliveryId = Annotated[uuid.UUID, PathParameter(description="The delivery's id.")]


class WebhookController(Controller):
    """Signed event deliveries (Standard Webhooks) to receivers of the calling client."""

    path = "/webhooks"
    tags = ["webhooks"]

    @post(
        "/",
        operation_id="CreateWebhook",
        summary="Subscribe a receiver to events",
        opt=requires("webhooks:write"),
        status_code=201,
        response_headers=[location("/v1/webhooks/{id}")],
        responses=problem_responses(401, 403, 413, 422, 503),
    )
    async def create(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        data: JSONBody[SubscriptionIn],
    ) -> Response[SubscriptionOut]:
        """The answer carries the signing ``secret``, shown only this once."""
        created = await services.create_subscription(db_session, state.settings, request.user, data)
        return Response(created, status_code=201, headers={"Location": f"/v1/webhooks/{created.id}"})

    @get(
        "/",
        operation_id="ListWebhooks",
        summary="The calling client's subscriptions, oldest first",
        opt=requires("webhooks:read"),
        responses=problem_responses(401, 403, 422),
    )
    async def list_subscriptions(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        cursor: PageCursor = None,
        limit: PageLimit = None,
    ) -> SubscriptionPage:
        """Secrets are never listed."""
        size = clamp_limit(limit, state.settings.max_page_size)
        page, last = await services.list_subscriptions(
            db_session, request.user, decode_time_cursor(cursor), size
        )
        return SubscriptionPage(
            items=[services.subscription_out(s) for s in page], next_cursor=encode_time_cursor(last)
        )

    @patch(
        "/{subscription_id:uuid}",
        operation_id="UpdateWebhook",
        summary="Change a subscription or rotate its secret",
        opt=requires("webhooks:write"),
        responses=problem_responses(401, 403, 404, 413, 422, 503),
    )
    async def update(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        data: JSONBody[SubscriptionPatch],
        subscription_id: SubscriptionId,
    ) -> SubscriptionOut:
        """After a rotation both secrets sign deliveries for ``LETHE_WEBHOOK_SECRET_OVERLAP_SECONDS``."""
        return await services.update_subscription(
            db_session, state.settings, request.user, subscription_id, data
        )

    @delete(
        "/{subscription_id:uuid}",
        operation_id="DeleteWebhook",
        summary="Remove a subscription and its pending deliveries",
        opt=requires("webhooks:write"),
        status_code=204,
        responses=problem_responses(401, 403, 404),
    )
    async def remove(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        subscription_id: SubscriptionId,
    ) -> None:
        """Deliveries not yet sent are dropped with it."""
        await services.delete_subscription(db_session, request.user, subscription_id)

    @get(
        "/deliveries",
        operation_id="ListWebhookDeliveries",
        summary="Deliveries and their attempts: status, response code, latency, next try",
        opt=requires("webhooks:read"),
        responses=problem_responses(401, 403, 422),
    )
    async def deliveries(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        subscription_id: Annotated[
            uuid.UUID | None, QueryParameter(description="Only deliveries to this subscription.")
        ] = None,
        request_id: Annotated[
            uuid.UUID | None, QueryParameter(description="Only events about this request.")
        ] = None,
        status: Annotated[DeliveryStatus | None, QueryParameter(description="Only in this state.")] = None,
        cursor: PageCursor = None,
        limit: PageLimit = None,
    ) -> DeliveryPage:
        """Response bodies are never stored; ``last_error`` names the kind of failure only."""
        size = clamp_limit(limit, state.settings.max_page_size)
        page, last = await services.list_deliveries(
            db_session,
            request.user,
            subscription_id=subscription_id,
            request_id=request_id,
            status=status,
            after=decode_time_cursor(cursor),
            limit=size,
        )
        return DeliveryPage(items=page, next_cursor=encode_time_cursor(last))

    @post(
        "/deliveries/{delivery_id:uuid}/redeliver",
        operation_id="RedeliverWebhook",
        summary="Send a delivery again (same webhook-id)",
        opt=requires("webhooks:write"),
        status_code=202,
        responses=problem_responses(401, 403, 404),
    )
    async def redeliver(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        delivery_id: DeliveryId,
    ) -> DeliveryOut:
        """Queued now with a fresh retry period; receivers deduplicate by ``webhook-id``."""
        return await services.redeliver(db_session, request.user, delivery_id)
