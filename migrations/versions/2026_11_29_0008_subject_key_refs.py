"""Per-system subject key references on request progress, and exports deleted by an erasure.

``subject_request_system.subject_key_ref`` is the HMAC of the subject's key in that system (the
erasure tombstone's formula): it finds every request about the same person in a system whatever
identity each request used, so an erasure can delete that person's earlier exports and an audit
search by one identity finds events recorded under another. ``subject_request.artifact_erased_at``
records that an export was deleted because its subject was erased (downloads then answer 410).

Revision ID: 0008_subject_key_refs
Revises: 0007_backups
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision = "0008_subject_key_refs"
down_revision = "0007_backups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subject_request_system") as batch:
        batch.add_column(sa.Column("subject_key_ref", sa.String(64), nullable=True))
    op.create_index(
        "ix_subject_request_system_key_ref", "subject_request_system", ["system", "subject_key_ref"]
    )
    with op.batch_alter_table("subject_request") as batch:
        batch.add_column(sa.Column("artifact_erased_at", DateTimeUTC(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subject_request") as batch:
        batch.drop_column("artifact_erased_at")
    op.drop_index("ix_subject_request_system_key_ref", table_name="subject_request_system")
    with op.batch_alter_table("subject_request_system") as batch:
        batch.drop_column("subject_key_ref")
