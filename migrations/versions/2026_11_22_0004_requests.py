"""Data-subject requests and their per-system progress.

Revision ID: 0004_requests
Revises: 0002_audit, 0003_manifests
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC, JsonB
from alembic import op

revision = "0004_requests"
down_revision = ("0002_audit", "0003_manifests")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subject_request",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("received_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("due_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("extended_due_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("extension_reason", sa.String(500), nullable=True),
        sa.Column("systems", JsonB, nullable=False),
        sa.Column("manifest_versions", JsonB, nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("subject_ref", sa.String(64), nullable=False),
        sa.Column("identity_types", JsonB, nullable=False),
        sa.Column("identities_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("changes_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("heartbeat_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("started_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("completed_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("failure_reason", sa.String(500), nullable=True),
        sa.Column("artifact_attempt", sa.Integer(), nullable=True),
        sa.Column("artifact_expires_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subject_request"),
    )
    op.create_index("ix_subject_request_status_received", "subject_request", ["status", "received_at"])
    op.create_index("ix_subject_request_received_id", "subject_request", ["received_at", "id"])
    op.create_index("ix_subject_request_client_id", "subject_request", ["client_id"])
    op.create_table(
        "subject_request_system",
        sa.Column("request_id", GUID(length=16), nullable=False),
        sa.Column("system", sa.String(128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("manifest_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("not_found", sa.Boolean(), nullable=False),
        sa.Column("counts", JsonB, nullable=False),
        sa.Column("cursor", JsonB, nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["subject_request.id"],
            name="fk_subject_request_system_request_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", "system", name="pk_subject_request_system"),
    )


def downgrade() -> None:
    op.drop_table("subject_request_system")
    op.drop_index("ix_subject_request_client_id", table_name="subject_request")
    op.drop_index("ix_subject_request_received_id", table_name="subject_request")
    op.drop_index("ix_subject_request_status_received", table_name="subject_request")
    op.drop_table("subject_request")
