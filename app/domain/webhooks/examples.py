"""Examples of the webhook bodies shown in the OpenAPI document."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from app.domain.webhooks.schemas import (
    DeliveryAttemptOut,
    DeliveryOut,
    DeliveryPage,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPage,
    SubscriptionPatch,
)
from app.lib.schema import BodyExample

__all__ = ("WEBHOOK_EXAMPLES",)

SUBSCRIPTION_ID = uuid.UUID("7c2a9e14-5b3d-4f61-8a0e-2d4c6b8f1a35")
CREATED = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
SENT = datetime(2026, 5, 4, 9, 30, 8, tzinfo=UTC)
_SUBSCRIPTION = SubscriptionOut(
    id=SUBSCRIPTION_ID,
    url="https://billing.example.com/lethe/webhooks",
    events=["request.completed", "request.failed", "export.ready"],
    description="billing service",
    active=True,
    request_id=None,
    created_at=CREATED,
    updated_at=CREATED,
    previous_secret_expires_at=None,
)
_DELIVERY = DeliveryOut(
    id=uuid.UUID("3e8b1f20-9c4d-4a7e-b6f5-0a1b2c3d4e5f"),
    subscription_id=SUBSCRIPTION_ID,
    event_type="request.completed",
    message_id="msg_5f0c3a9e2b7d4e1f8a6b0c2d4e6f8a1b",
    request_id=uuid.UUID("0b9f4c7e-3a53-4f4e-9d0b-7d2f0a6c1e42"),
    status="delivered",
    attempts=2,
    last_status_code=200,
    last_latency_ms=84,
    last_error=None,
    next_attempt_at=None,
    created_at=datetime(2026, 5, 4, 9, 30, 7, tzinfo=UTC),
    delivered_at=SENT,
    history=[
        DeliveryAttemptOut(
            at=datetime(2026, 5, 4, 9, 30, 7, tzinfo=UTC), status_code=503, latency_ms=41, error="http_503"
        ),
        DeliveryAttemptOut(at=SENT, status_code=200, latency_ms=84, error=None),
    ],
)

WEBHOOK_EXAMPLES = (
    BodyExample(
        "subscribe",
        "Completion and failure of the billing service's requests, and ready exports",
        SubscriptionIn(
            url="https://billing.example.com/lethe/webhooks",
            events=["request.completed", "request.failed", "export.ready"],
            description="billing service",
        ),
    ),
    BodyExample(
        "rotate",
        "A new secret; the previous one keeps signing for a while",
        SubscriptionPatch(rotate_secret=True),
    ),
    BodyExample(
        "created",
        "The new subscription with its secret (shown once)",
        SubscriptionOut(
            **{
                **{f: getattr(_SUBSCRIPTION, f) for f in _SUBSCRIPTION.__struct_fields__},
                "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            }
        ),
    ),
    BodyExample(
        "page", "The caller's subscriptions", SubscriptionPage(items=[_SUBSCRIPTION], next_cursor=None)
    ),
    BodyExample("delivered", "Delivered on the second attempt", _DELIVERY),
    BodyExample("page", "Deliveries with their attempts", DeliveryPage(items=[_DELIVERY], next_cursor=None)),
)
"""Attached by the OpenAPI completion to each body whose struct it is."""
