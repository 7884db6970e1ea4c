"""Rate-limit windows per calling client and scope; the identity column types of each manifest.

``manifest_version.identity_columns`` holds, per identity, the reflected type of its column
(affinity, type name, length) when the version was validated against the live target, so a
request's identities are checked at the API. Versions registered before stay NULL (unchecked).

Revision ID: 0010_limits_identity_types
Revises: 0009_audit_chain_key
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import JsonB
from alembic import op

revision = "0010_limits_identity_types"
down_revision = "0009_audit_chain_key"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("manifest_version", sa.Column("identity_columns", JsonB, nullable=True))
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
    with op.batch_alter_table("manifest_version") as batch:
        batch.drop_column("identity_columns")
