"""Requests: whether a request holds external tasks, so reads and transitions of the many that
hold none skip looking for them.

Revision ID: 0016_holds_tasks
Revises: 0015_external_parts
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_holds_tasks"
down_revision = "0015_external_parts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subject_request") as batch:
        batch.add_column(sa.Column("holds_tasks", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(
        "UPDATE subject_request SET holds_tasks = TRUE WHERE id IN (SELECT request_id FROM external_task)"
    )


def downgrade() -> None:
    with op.batch_alter_table("subject_request") as batch:
        batch.drop_column("holds_tasks")
