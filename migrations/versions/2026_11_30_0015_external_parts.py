"""External tasks: when they were opened (their one-time identity read expires a while after),
and the export part a system reported for an access request (frame-encrypted, kept until the
export is assembled).

Revision ID: 0015_external_parts
Revises: 0014_recipients
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0015_external_parts"
down_revision = "0014_recipients"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("external_task") as batch:
        batch.add_column(sa.Column("opened_at", DateTimeUTC(timezone=True), nullable=True))
        batch.add_column(
            sa.Column(
                "export_part",
                sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("external_task") as batch:
        batch.drop_column("export_part")
        batch.drop_column("opened_at")
