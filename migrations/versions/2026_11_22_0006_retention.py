"""Retention policies and runs.

Revision ID: 0006_retention
Revises: 0005_erasure
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC, JsonB
from alembic import op

revision = "0006_retention"
down_revision = "0005_erasure"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retention_policy",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("system", sa.String(63), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("manifest_version", sa.Integer(), nullable=True),
        sa.Column("table_name", sa.String(128), nullable=False),
        sa.Column("age_column", sa.String(128), nullable=False),
        sa.Column("older_than", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("soft_delete_column", sa.String(128), nullable=True),
        sa.Column("filters", JsonB, nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("schedule", sa.String(64), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_due_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_retention_policy"),
        sa.UniqueConstraint("system", "name", name="uq_retention_policy_system_name"),
    )
    op.create_index("ix_retention_policy_next_due_at", "retention_policy", ["next_due_at"])
    op.create_table(
        "retention_run",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("policy_id", GUID(length=16), nullable=True),
        sa.Column("policy_name", sa.String(128), nullable=False),
        sa.Column("system", sa.String(63), nullable=False),
        sa.Column("table_name", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cutoff", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("purge_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("cursor", JsonB, nullable=True),
        sa.Column("rows_affected", sa.BigInteger(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("longest_batch_ms", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("heartbeat_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("started_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("finished_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("error", sa.String(512), nullable=True),
        sa.Column("sql", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_retention_run"),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["retention_policy.id"], name="fk_retention_run_policy_id", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_retention_run_policy_status", "retention_run", ["policy_id", "status"])
    op.create_index("ix_retention_run_started_at", "retention_run", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_retention_run_started_at", table_name="retention_run")
    op.drop_index("ix_retention_run_policy_status", table_name="retention_run")
    op.drop_table("retention_run")
    op.drop_index("ix_retention_policy_next_due_at", table_name="retention_policy")
    op.drop_table("retention_policy")
