"""Subscriptions (owned by the calling client), their secrets, and the delivery log."""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any, get_args

from sqlalchemy import and_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.webhooks import WebhookDelivery, WebhookEvent, WebhookSubscription
from app.domain.audit import services as audit
from app.domain.webhooks.outbound import AllowList, check_destination
from app.domain.webhooks.schemas import (
    DeliveryAttemptOut,
    DeliveryOut,
    EventType,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
)
from app.lib.auth import ADMIN_SCOPE, Principal
from app.lib.clock import utcnow
from app.lib.crypto import aes_key, decrypt, encrypt
from app.lib.errors import NotFound, Unavailable

__all__ = (
    "CALLBACK_EVENTS",
    "attach_callback",
    "callback_secret",
    "create_subscription",
    "delete_subscription",
    "list_deliveries",
    "list_subscriptions",
    "redeliver",
    "signing_secrets",
    "subscription_out",
    "update_subscription",
)

CALLBACK_EVENTS = [e for e in get_args(EventType) if e.startswith("request.") or e == "export.ready"]
"""What a request's ``callback_url`` receives (about that request only)."""
HISTORY_KEPT = 20


# --- secrets ----------------------------------------------------------------------------------


def _key(settings: Settings) -> bytes:
    if not settings.artifact_key:
        raise Unavailable("LETHE_ARTIFACT_KEY is not configured: webhook secrets cannot be stored")
    return aes_key(settings.artifact_key)


def _new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _seal(settings: Settings, subscription_id: uuid.UUID, secret: str) -> bytes:
    return encrypt(_key(settings), secret.encode(), f"lethe-webhook:{subscription_id}:secret".encode())


def _unseal(settings: Settings, subscription_id: uuid.UUID, blob: bytes) -> str:
    return decrypt(_key(settings), blob, f"lethe-webhook:{subscription_id}:secret".encode()).decode()


def signing_secrets(settings: Settings, subscription: WebhookSubscription, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one during overlap."""
    found = [_unseal(settings, subscription.id, subscription.secret_encrypted)]
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret_encrypted is not None and expires is not None and expires > now:
        found.append(_unseal(settings, subscription.id, subscription.previous_secret_encrypted))
    return found


# --- subscriptions ----------------------------------------------------------------------------


def subscription_out(subscription: WebhookSubscription, secret: str | None = None) -> SubscriptionOut:
    """The API view of a subscription (``secret`` only right after creation or rotation)."""
    return SubscriptionOut(
        id=subscription.id,
        url=subscription.url,
        events=list(subscription.events),  # type: ignore[arg-type]
        description=subscription.description,
        active=subscription.active,
        request_id=subscription.request_id,
        created_at=subscription.created_at,
        updated_at=subscription.updated_at,
        previous_secret_expires_at=subscription.previous_secret_expires_at,
        secret=secret,
    )


def _owned_by(viewer: Principal) -> Any:
    if ADMIN_SCOPE in viewer.scopes:
        return true()
    return WebhookSubscription.client_id == viewer.client_id


async def _load(session: AsyncSession, subscription_id: uuid.UUID, viewer: Principal) -> WebhookSubscription:
    subscription = await session.scalar(
        select(WebhookSubscription).where(WebhookSubscription.id == subscription_id, _owned_by(viewer))
    )
    if subscription is None:
        raise NotFound(f"webhook subscription {subscription_id} does not exist")
    return subscription


async def _new_subscription(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    *,
    url: str,
    events: list[str],
    description: str | None,
    request_id: uuid.UUID | None,
    field: str,
) -> tuple[WebhookSubscription, str]:
    await check_destination(url, AllowList.parse(settings.webhook_allowed_hosts), field)
    now = utcnow()
    subscription_id = uuid.uuid4()
    secret = _new_secret()
    subscription = WebhookSubscription(
        id=subscription_id,
        client_id=principal.client_id,
        admin=ADMIN_SCOPE in principal.scopes and request_id is None,
        url=url,
        events=list(dict.fromkeys(events)),
        description=description,
        active=True,
        request_id=request_id,
        secret_encrypted=_seal(settings, subscription_id, secret),
        created_at=now,
        updated_at=now,
    )
    session.add(subscription)
    await session.flush()
    await audit.append(
        session,
        action="webhook.subscribed",
        actor=principal.sub,
        request_id=str(request_id) if request_id else None,
        payload={"subscription_id": str(subscription_id), "events": subscription.events},
    )
    return subscription, secret


async def create_subscription(
    session: AsyncSession, settings: Settings, principal: Principal, body: SubscriptionIn
) -> SubscriptionOut:
    """Register a receiver after checking its destination; the secret is returned this once.

    Raises:
        DestinationRefused: the URL is not https to a public address (and not allow-listed).
    """
    subscription, secret = await _new_subscription(
        session,
        settings,
        principal,
        url=body.url,
        events=list(body.events),
        description=body.description,
        request_id=None,
        field="body.url",
    )
    return subscription_out(subscription, secret)


async def attach_callback(
    session: AsyncSession, settings: Settings, principal: Principal, request_id: uuid.UUID, url: str
) -> str:
    """The subscription of a request's ``callback_url`` (that request's events only); its secret."""
    _, secret = await _new_subscription(
        session,
        settings,
        principal,
        url=url,
        events=CALLBACK_EVENTS,
        description="callback_url of a request",
        request_id=request_id,
        field="body.callback_url",
    )
    return secret


async def callback_secret(session: AsyncSession, settings: Settings, request_id: uuid.UUID) -> str | None:
    """The secret of a request's ``callback_url`` subscription (for the creation answer)."""
    subscription = await session.scalar(
        select(WebhookSubscription).where(WebhookSubscription.request_id == request_id)
    )
    if subscription is None:
        return None
    return _unseal(settings, subscription.id, subscription.secret_encrypted)


async def list_subscriptions(
    session: AsyncSession, viewer: Principal, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> tuple[list[WebhookSubscription], tuple[datetime, uuid.UUID] | None]:
    """The viewer's client's subscriptions (every one for ``requests:admin``), oldest first."""
    statement = select(WebhookSubscription).where(_owned_by(viewer))
    if after is not None:
        statement = statement.where(
            or_(
                WebhookSubscription.created_at > after[0],
                and_(WebhookSubscription.created_at == after[0], WebhookSubscription.id > after[1]),
            )
        )
    rows = list(
        (
            await session.scalars(
                statement.order_by(WebhookSubscription.created_at, WebhookSubscription.id).limit(limit + 1)
            )
        ).all()
    )
    page = rows[:limit]
    last = (page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return page, last


async def update_subscription(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    subscription_id: uuid.UUID,
    body: SubscriptionPatch,
) -> SubscriptionOut:
    """Change URL, events, description or state, or rotate the secret (two valid for a while)."""
    subscription = await _load(session, subscription_id, principal)
    now = utcnow()
    if body.url is not None:
        await check_destination(body.url, AllowList.parse(settings.webhook_allowed_hosts))
        subscription.url = body.url
    if body.events is not None:
        subscription.events = list(dict.fromkeys(body.events))
    if body.description is not None:
        subscription.description = body.description
    if body.active is not None:
        subscription.active = body.active
    secret = None
    if body.rotate_secret:
        secret = _new_secret()
        subscription.previous_secret_encrypted = subscription.secret_encrypted
        subscription.previous_secret_expires_at = now + timedelta(
            seconds=settings.webhook_secret_overlap_seconds
        )
        subscription.secret_encrypted = _seal(settings, subscription.id, secret)
    subscription.updated_at = now
    await session.flush()
    await audit.append(
        session,
        action="webhook.updated",
        actor=principal.sub,
        payload={"subscription_id": str(subscription.id), "rotated": body.rotate_secret},
    )
    return subscription_out(subscription, secret)


async def delete_subscription(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID
) -> None:
    """Remove a subscription and its deliveries (pending ones are never sent)."""
    subscription = await _load(session, subscription_id, principal)
    await session.delete(subscription)
    await session.flush()
    await audit.append(
        session,
        action="webhook.deleted",
        actor=principal.sub,
        payload={"subscription_id": str(subscription_id)},
    )


# --- deliveries -------------------------------------------------------------------------------


def _delivered_to(viewer: Principal) -> Any:
    if ADMIN_SCOPE in viewer.scopes:
        return true()
    return WebhookDelivery.client_id == viewer.client_id


def delivery_out(delivery: WebhookDelivery, event: WebhookEvent) -> DeliveryOut:
    """The API view of a delivery and its latest attempts."""
    return DeliveryOut(
        id=delivery.id,
        subscription_id=delivery.subscription_id,
        event_type=event.type,  # type: ignore[arg-type]
        message_id=event.message_id,
        request_id=delivery.request_id,
        status=delivery.status,  # type: ignore[arg-type]
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_latency_ms=delivery.last_latency_ms,
        last_error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
        history=[
            DeliveryAttemptOut(
                at=datetime.fromisoformat(h["at"]),
                status_code=h.get("status_code"),
                latency_ms=int(h.get("latency_ms", 0)),
                error=h.get("error"),
            )
            for h in delivery.history
        ],
    )


async def list_deliveries(
    session: AsyncSession,
    viewer: Principal,
    *,
    subscription_id: uuid.UUID | None,
    request_id: uuid.UUID | None,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> tuple[list[DeliveryOut], tuple[datetime, uuid.UUID] | None]:
    """Deliveries of the viewer's subscriptions, oldest first, with filters."""
    statement = (
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.seq == WebhookDelivery.event_seq)
        .where(_delivered_to(viewer))
    )
    if subscription_id is not None:
        statement = statement.where(WebhookDelivery.subscription_id == subscription_id)
    if request_id is not None:
        statement = statement.where(WebhookDelivery.request_id == request_id)
    if status is not None:
        statement = statement.where(WebhookDelivery.status == status)
    if after is not None:
        statement = statement.where(
            or_(
                WebhookDelivery.created_at > after[0],
                and_(WebhookDelivery.created_at == after[0], WebhookDelivery.id > after[1]),
            )
        )
    rows = (
        await session.execute(
            statement.order_by(WebhookDelivery.created_at, WebhookDelivery.id).limit(limit + 1)
        )
    ).all()
    page = [delivery_out(d, e) for d, e in rows[:limit]]
    last = (page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return page, last


async def redeliver(session: AsyncSession, viewer: Principal, delivery_id: uuid.UUID) -> DeliveryOut:
    """Send a delivery again now (same ``webhook-id``), with a fresh retry period."""
    row = (
        await session.execute(
            select(WebhookDelivery, WebhookEvent)
            .join(WebhookEvent, WebhookEvent.seq == WebhookDelivery.event_seq)
            .where(WebhookDelivery.id == delivery_id, _delivered_to(viewer))
        )
    ).first()
    if row is None:
        raise NotFound(f"webhook delivery {delivery_id} does not exist")
    delivery, event = row
    now = utcnow()
    delivery.status = "pending"
    delivery.next_attempt_at = now
    delivery.window_started_at = now
    delivery.delivered_at = None
    await session.flush()
    await audit.append(
        session,
        action="webhook.redelivered",
        actor=viewer.sub,
        request_id=str(delivery.request_id) if delivery.request_id else None,
        payload={"delivery_id": str(delivery.id), "event_type": event.type},
    )
    return delivery_out(delivery, event)
