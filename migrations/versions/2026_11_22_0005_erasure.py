"""Erasure plans recorded per request and system.

Revision ID: 0005_erasure
Revises: 0004_requests
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC, JsonB
from alembic import op

revision = "0005_erasure"
down_revision = "0004_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erasure_plan",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("system", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("plan", JsonB, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_erasure_plan"),
    )
    op.create_index("ix_erasure_plan_request_system", "erasure_plan", ["request_id", "system"])


def downgrade() -> None:
    op.drop_index("ix_erasure_plan_request_system", table_name="erasure_plan")
    op.drop_table("erasure_plan")
