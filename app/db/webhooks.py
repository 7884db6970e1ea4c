"""Webhooks: subscriptions, the outbox of events, and one delivery row per event and subscription."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ("DELIVERY_STATUSES", "WebhookDelivery", "WebhookEvent", "WebhookSubscription")

DELIVERY_STATUSES = ("pending", "delivered", "dead")
"""``pending`` (waiting or being sent), ``delivered`` (a 2xx answer), ``dead`` (retries exhausted)."""


class WebhookSubscription(DefaultBase):
    """Where a calling client wants events sent, which ones, and the secret(s) signing them.

    Secrets are stored encrypted with the artifact key (they must be read back to sign). After a
    rotation the previous secret signs too until ``previous_secret_expires_at``, so receivers can
    switch without losing a delivery. ``request_id`` is set for the subscription a request's
    ``callback_url`` creates: it only receives that request's events.
    """

    __tablename__ = "webhook_subscription"
    __table_args__ = (Index("ix_webhook_subscription_client_id", "client_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    client_id: Mapped[str] = mapped_column(String(255))
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    """Created by an operator (``requests:admin``): receives every client's and system events."""
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JsonB)
    description: Mapped[str | None] = mapped_column(String(500))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    request_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


class WebhookEvent(DefaultBase):
    """One event of the outbox, written in the transaction of the change that caused it.

    ``seq`` orders events (per request, the order of its transitions); ``message_id`` is the
    ``webhook-id`` every delivery and redelivery of the event carries, so receivers deduplicate.
    ``dedupe_key`` (unique) stops a periodic check from announcing the same thing twice.
    """

    __tablename__ = "webhook_event"
    __table_args__ = (
        Index("ix_webhook_event_request_id", "request_id"),
        Index("uq_webhook_event_dedupe_key", "dedupe_key", unique=True),
        UniqueConstraint("message_id", name="uq_webhook_event_message_id"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    client_id: Mapped[str | None] = mapped_column(String(255))
    """The client the event concerns (a request's creator); None: an operator's event."""
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonB)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


class WebhookDelivery(DefaultBase):
    """One event to one subscription: its attempts, its lease, and when it is tried next.

    ``claim`` grows on every lease taken: the outcome of an attempt is written with
    ``WHERE id = :id AND claim = :claim``, so a sender whose lease expired (it stalled or died)
    cannot overwrite what a newer attempt recorded.
    """

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_order", "subscription_id", "request_id", "event_seq"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    event_seq: Mapped[int] = mapped_column(
        Integer, ForeignKey("webhook_event.seq", name="fk_webhook_delivery_event_seq", ondelete="CASCADE")
    )
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        Uuid,
        ForeignKey("webhook_subscription.id", name="fk_webhook_delivery_subscription_id", ondelete="CASCADE"),
    )
    client_id: Mapped[str] = mapped_column(String(255))
    request_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claim: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    window_started_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    """Retries stop (``dead``) once this is older than the retry period; a redelivery resets it."""
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_latency_ms: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    history: Mapped[list[dict[str, Any]]] = mapped_column(JsonB)
    """The latest attempts (at most 20): time, status code, latency, error kind."""
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
