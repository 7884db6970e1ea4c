"""Webhooks: subscriptions, the outbox of events, and their deliveries.

Events are inserted in the transaction of the state change that causes them, with one delivery
row per matching subscription; delivery workers lease those rows (``claim`` fences a late writer).

Revision ID: 0011_webhooks_outbox
Revises: 0010_limits_identity_types
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC, JsonB
from alembic import op

revision = "0011_webhooks_outbox"
down_revision = "0010_limits_identity_types"
branch_labels = None
depends_on = None


def _when(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, DateTimeUTC(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "webhook_subscription",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", JsonB, nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("secret_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("previous_secret_encrypted", sa.LargeBinary(), nullable=True),
        _when("previous_secret_expires_at", nullable=True),
        _when("created_at", nullable=False),
        _when("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_subscription"),
    )
    op.create_index("ix_webhook_subscription_client_id", "webhook_subscription", ["client_id"])
    op.create_table(
        "webhook_event",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("client_id", sa.String(255), nullable=True),
        sa.Column("dedupe_key", sa.String(200), nullable=True),
        sa.Column("payload", JsonB, nullable=False),
        _when("created_at", nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_webhook_event"),
        sa.UniqueConstraint("message_id", name="uq_webhook_event_message_id"),
    )
    op.create_index("ix_webhook_event_request_id", "webhook_event", ["request_id"])
    op.create_index("uq_webhook_event_dedupe_key", "webhook_event", ["dedupe_key"], unique=True)
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("event_seq", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claim", sa.Integer(), nullable=False),
        _when("next_attempt_at", nullable=False),
        _when("window_started_at", nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        _when("lease_expires_at", nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_latency_ms", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("history", JsonB, nullable=False),
        _when("created_at", nullable=False),
        _when("delivered_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_delivery"),
        sa.ForeignKeyConstraint(
            ["event_seq"], ["webhook_event.seq"], name="fk_webhook_delivery_event_seq", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["webhook_subscription.id"],
            name="fk_webhook_delivery_subscription_id",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_webhook_delivery_due", "webhook_delivery", ["status", "next_attempt_at"])
    op.create_index(
        "ix_webhook_delivery_order", "webhook_delivery", ["subscription_id", "request_id", "event_seq"]
    )


def downgrade() -> None:
    op.drop_table("webhook_delivery")
    op.drop_table("webhook_event")
    op.drop_table("webhook_subscription")
