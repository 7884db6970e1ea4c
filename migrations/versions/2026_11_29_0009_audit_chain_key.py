"""Keyed audit chain: every event records the epoch of the chain key its link was made with.

Events written before this revision keep epoch 0 (plain SHA-256 links). The first event appended
afterwards is ``audit.chain_keyed``: an HMAC link under the chain key whose ``prev_hash`` is the
old head, so the unkeyed history is anchored and any later rewrite of it breaks the chain there.

Revision ID: 0009_audit_chain_key
Revises: 0008_subject_key_refs
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_audit_chain_key"
down_revision = "0008_subject_key_refs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no table copy): the append-only triggers stay in place.
    op.add_column("audit_event", sa.Column("epoch", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("audit_event") as batch:
        batch.drop_column("epoch")
