"""Bodies of the webhook endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.lib.schema import BaseStruct, InputStruct

__all__ = (
    "DeliveryAttemptOut",
    "DeliveryOut",
    "DeliveryPage",
    "DeliveryStatus",
    "EventType",
    "SubscriptionIn",
    "SubscriptionOut",
    "SubscriptionPage",
    "SubscriptionPatch",
)

EventType = Literal[
    "request.received",
    "request.awaiting_approval",
    "request.completed",
    "request.failed",
    "request.due_soon",
    "request.overdue",
    "export.ready",
    "external_task.created",
    "recipient.notice",
    "retention.run_failed",
    "backups.critical",
]
"""What happened; ``retention.run_failed`` and ``backups.critical`` reach operators' subscriptions;
``recipient.notice`` reaches the client a manifest names as a recipient (Art. 19)."""
DeliveryStatus = Literal["pending", "delivered", "dead"]
"""``pending``: waiting for its next try or being sent; ``dead``: retries exhausted (redeliver it)."""
WebhookUrl = Annotated[str, msgspec.Meta(min_length=8, max_length=2048)]
Events = Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=16)]
Description = Annotated[str, msgspec.Meta(max_length=500)]


class SubscriptionIn(InputStruct):
    """A receiver: an ``https`` URL with a public address, and the events it wants."""

    url: WebhookUrl
    events: Events
    description: Description | None = None


class SubscriptionPatch(InputStruct):
    """Change a subscription; ``rotate_secret`` issues a new secret (the old one keeps signing for
    ``LETHE_WEBHOOK_SECRET_OVERLAP_SECONDS``)."""

    url: WebhookUrl | None = None
    events: Events | None = None
    description: Description | None = None
    active: bool | None = None
    rotate_secret: bool = False


class SubscriptionOut(BaseStruct):
    """A subscription. ``secret`` (``whsec_…``) is only shown when created or rotated."""

    id: uuid.UUID
    url: str
    events: list[EventType]
    description: str | None
    active: bool
    request_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    previous_secret_expires_at: datetime | None
    secret: str | None = None


class SubscriptionPage(BaseStruct):
    """A page of subscriptions, oldest first; pass ``next_cursor`` as ``cursor`` (null at the end)."""

    items: list[SubscriptionOut]
    next_cursor: str | None


class DeliveryAttemptOut(BaseStruct):
    """One attempt: when, the receiver's status code (null: no answer), latency, error kind."""

    at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None


class DeliveryOut(BaseStruct):
    """One event sent to one subscription, with its latest attempts and its next try."""

    id: uuid.UUID
    subscription_id: uuid.UUID
    event_type: EventType
    message_id: str
    request_id: uuid.UUID | None
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_latency_ms: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    history: list[DeliveryAttemptOut]


class DeliveryPage(BaseStruct):
    """A page of deliveries, oldest first; pass ``next_cursor`` as ``cursor`` (null at the end)."""

    items: list[DeliveryOut]
    next_cursor: str | None
