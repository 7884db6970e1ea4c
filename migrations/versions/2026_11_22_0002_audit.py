"""Audit log, consent ledger and erasure tombstones: append-only, enforced by triggers.

Revision ID: 0002_audit
Revises: 0001_foundation
Create Date: 2026-11-22

The tables are owned by the role that runs migrations. The runtime role (the one in
``LETHE_DATABASE_URL``) needs INSERT and SELECT on them and nothing else; on PostgreSQL the
operator grants, as the owner::

    REVOKE ALL ON audit_event, consent_event, erasure_tombstone FROM lethe_app;
    GRANT SELECT, INSERT ON audit_event, consent_event, erasure_tombstone TO lethe_app;

Even the owner is refused UPDATE, DELETE and TRUNCATE by the triggers below; an owner can still
disable them (``ALTER TABLE ... DISABLE TRIGGER``), which is why the audit log is also hash
chained and checkpointed: such tampering is detected by ``lethe audit verify``.
SQLite has no roles and no TRUNCATE (``DELETE FROM t`` is its equivalent and fires the DELETE
trigger, because SQLite's truncate optimisation is off for tables with triggers).
"""

from __future__ import annotations

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC, JsonB
from alembic import op

revision = "0002_audit"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

TABLES = ("audit_event", "consent_event", "erasure_tombstone")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION lethe_reject_append_only_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def _create_tables() -> None:
    op.create_table(
        "audit_event",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("occurred_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("system", sa.String(128), nullable=True),
        sa.Column("subject_ref", sa.String(64), nullable=True),
        sa.Column("payload", JsonB, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_event"),
    )
    op.create_index("ix_audit_event_action", "audit_event", ["action"])
    op.create_index("ix_audit_event_request_id", "audit_event", ["request_id"])
    op.create_index("ix_audit_event_subject_ref", "audit_event", ["subject_ref"])
    op.create_index("ix_audit_event_occurred_at", "audit_event", ["occurred_at"])
    op.create_table(
        "consent_event",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subject_ref", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(128), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("policy_version", sa.String(128), nullable=False),
        sa.Column("text_hash", sa.String(64), nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("occurred_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("recorded_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consent_event"),
    )
    op.create_index(
        "ix_consent_event_subject_purpose",
        "consent_event",
        ["subject_ref", "purpose", "occurred_at"],
    )
    op.create_table(
        "erasure_tombstone",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("system", sa.String(128), nullable=False),
        sa.Column("subject_key_ref", sa.String(64), nullable=False),
        sa.Column("erased_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_erasure_tombstone"),
    )
    op.create_index(
        "ix_erasure_tombstone_system_ref", "erasure_tombstone", ["system", "subject_key_ref"]
    )
    op.create_index("ix_erasure_tombstone_erased_at", "erasure_tombstone", ["erased_at"])


def _create_triggers(dialect: str) -> None:
    if dialect == "postgresql":
        op.execute(PG_FUNCTION)
        for table in TABLES:
            op.execute(
                f"CREATE TRIGGER trg_{table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION lethe_reject_append_only_change()"
            )
            op.execute(
                f"CREATE TRIGGER trg_{table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION lethe_reject_append_only_change()"
            )
    elif dialect == "sqlite":
        for table in TABLES:
            for statement in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER trg_{table}_no_{statement.lower()} BEFORE {statement} "
                    f"ON {table} BEGIN SELECT RAISE(ABORT, 'table {table} is append-only: "
                    f"{statement} refused'); END"
                )


def upgrade() -> None:
    _create_tables()
    _create_triggers(op.get_bind().dialect.name)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS lethe_reject_append_only_change()")
