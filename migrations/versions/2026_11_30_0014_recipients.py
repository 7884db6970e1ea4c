"""Art. 19 recipients: who was (or must be) told of a completed rectification or erasure.

Revision ID: 0014_recipients
Revises: 0013_external_tasks
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC, JsonB
from alembic import op

revision = "0014_recipients"
down_revision = "0013_external_tasks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_recipient",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=True),
        sa.Column("tables", JsonB, nullable=False),
        sa.Column("categories", JsonB, nullable=False),
        sa.Column("event_seq", sa.Integer(), nullable=True),
        sa.Column("notified_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("notified_by", sa.String(255), nullable=True),
        sa.Column("evidence", sa.String(500), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["subject_request.id"], name="fk_request_recipient_request_id", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("request_id", "position", name="pk_request_recipient"),
    )


def downgrade() -> None:
    op.drop_table("request_recipient")
