"""External systems: one task per request and ``kind: external`` system, reported back by it.

Revision ID: 0013_external_tasks
Revises: 0012_audit_sequencer
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC, JsonB
from alembic import op

revision = "0013_external_tasks"
down_revision = "0012_audit_sequencer"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "external_task",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("system", sa.String(128), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("manifest_version", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("notify", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("identities_read_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("counts", JsonB, nullable=False),
        sa.Column("evidence", sa.String(500), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["subject_request.id"], name="fk_external_task_request_id", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("request_id", "system", name="pk_external_task"),
        sa.UniqueConstraint("id", name="uq_external_task_id"),
    )
    op.create_index("ix_external_task_status_due", "external_task", ["status", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_external_task_status_due", table_name="external_task")
    op.drop_table("external_task")
