"""Rate-limit windows per calling client and scope, shared by every replica.

Revision ID: 0009_rate_limits
Revises: 0008_audit_chain_key
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_rate_limits"
down_revision = "0008_audit_chain_key"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_window",
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("window_start", sa.Integer(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "scope", "window_start", name="pk_rate_limit_window"),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_window")
