"""Examples of the Art. 19 recipient bodies shown in the OpenAPI document."""

from __future__ import annotations

from datetime import UTC, datetime

from app.domain.recipients.schemas import RecipientNotifiedIn, RecipientOut
from app.lib.schema import BodyExample

__all__ = ("RECIPIENTS", "RECIPIENT_EXAMPLES")

RECIPIENTS = [
    RecipientOut(
        name="carrier",
        status="notified",
        via="webhook",
        tables={"shop": {"orders": 4}},
        categories=["user.content.note"],
        notified_at=datetime(2026, 5, 4, 9, 30, 9, tzinfo=UTC),
        evidence=None,
    ),
    RecipientOut(
        name="payment provider",
        status="manual",
        via=None,
        tables={"shop": {"orders": 4}},
        categories=["user.content.note"],
        notified_at=None,
        evidence=None,
    ),
]
"""The recipients of a completed erasure: one told by webhook, one to be told by hand."""

RECIPIENT_EXAMPLES = (
    BodyExample(
        "letter",
        "The payment provider was told by registered letter",
        RecipientNotifiedIn(evidence="LETTER-2026-17"),
    ),
    BodyExample(
        "recorded",
        "The recipient after the notification was recorded",
        RecipientOut(
            name="payment provider",
            status="notified",
            via="manual",
            tables={"shop": {"orders": 4}},
            categories=["user.content.note"],
            notified_at=datetime(2026, 5, 5, 10, 0, tzinfo=UTC),
            evidence="LETTER-2026-17",
        ),
    ),
)
"""Attached by the OpenAPI completion to each body whose struct it is."""
