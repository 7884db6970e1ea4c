"""Audit sequencer: writers queue unchained events, one leased sequencer links them in batches.

``audit_pending`` holds events committed by their writers and not yet linked; UPDATE is refused
by a trigger, DELETE is the sequencer's (it moves rows into ``audit_event`` and deletes them in
one transaction). ``audit_event.event_id`` keeps the id an event had while pending.
``audit_sequencer`` is the one-row lease of the active sequencer. The runtime role needs, on
PostgreSQL::

    GRANT SELECT, INSERT, DELETE ON audit_pending TO lethe_app;
    GRANT SELECT, UPDATE ON audit_sequencer TO lethe_app;

Revision ID: 0012_audit_sequencer
Revises: 0011_webhooks_outbox
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC, JsonB
from alembic import op

revision = "0012_audit_sequencer"
down_revision = "0011_webhooks_outbox"
branch_labels = None
depends_on = None

PG_NO_UPDATE = (
    "CREATE TRIGGER trg_audit_pending_no_update BEFORE UPDATE ON audit_pending "
    "FOR EACH ROW EXECUTE FUNCTION lethe_reject_append_only_change()"
)
SQLITE_NO_UPDATE = (
    "CREATE TRIGGER trg_audit_pending_no_update BEFORE UPDATE ON audit_pending "
    "BEGIN SELECT RAISE(ABORT, 'table audit_pending is append-only: UPDATE refused'); END"
)


def upgrade() -> None:
    op.create_table(
        "audit_pending",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("system", sa.String(128), nullable=True),
        sa.Column("subject_ref", sa.String(64), nullable=True),
        sa.Column("payload", JsonB, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_pending"),
        sa.UniqueConstraint("event_id", name="uq_audit_pending_event_id"),
    )
    op.create_table(
        "audit_sequencer",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("fence", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("expires_at", DateTimeUTC(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_audit_sequencer"),
    )
    op.execute("INSERT INTO audit_sequencer (name, fence) VALUES ('audit', 0)")
    # A plain ADD COLUMN and a separate index (no table copy): the append-only triggers stay.
    op.add_column("audit_event", sa.Column("event_id", sa.Uuid(), nullable=True))
    op.create_index("uq_audit_event_event_id", "audit_event", ["event_id"], unique=True)
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(PG_NO_UPDATE)
    elif dialect == "sqlite":
        op.execute(SQLITE_NO_UPDATE)


def downgrade() -> None:
    op.drop_index("uq_audit_event_event_id", table_name="audit_event")
    with op.batch_alter_table("audit_event") as batch:
        batch.drop_column("event_id")
    op.drop_table("audit_sequencer")
    op.drop_table("audit_pending")
