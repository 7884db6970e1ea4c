"""Backup restore tests.

Revision ID: 0007_backups
Revises: 0006_retention
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC, JsonB
from alembic import op

revision = "0007_backups"
down_revision = "0006_retention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backup_restore_test",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("system", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("started_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("finished_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("dump_name", sa.String(255), nullable=True),
        sa.Column("dump_size", sa.BigInteger(), nullable=True),
        sa.Column("dump_modified_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("scratch_database", sa.String(63), nullable=True),
        sa.Column("scratch_dropped", sa.Boolean(), nullable=True),
        sa.Column("restore_exit_code", sa.Integer(), nullable=True),
        sa.Column("tables", JsonB, nullable=False),
        sa.Column("resurrected_subjects", sa.Integer(), nullable=True),
        sa.Column("resurrected_refs", JsonB, nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_backup_restore_test"),
    )
    op.create_index(
        "ix_backup_restore_test_system_started_at", "backup_restore_test", ["system", "started_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_backup_restore_test_system_started_at", table_name="backup_restore_test")
    op.drop_table("backup_restore_test")
