"""The audit chain on SQLite and PostgreSQL: serialised appends, append-only tables, tampering."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.db.audit import AuditEvent, ErasureTombstone
from app.db.group_commit import GroupCommitter
from app.db.store import create_store_engine
from app.domain.audit.chain import make_checkpoint, verify_chain, verify_checkpoint_signature
from app.domain.audit.links import event_hash
from app.domain.audit.references import (
    add_tombstone,
    subject_reference,
    tombstone_reference,
    tombstones_since,
)
from app.domain.audit.sequencer import sequence_now
from app.domain.audit.services import append
from app.domain.consent.services import NewConsent, record_consent
from app.lib.crypto import generate_signing_key_pem
from app.lib.errors import Unavailable, ValidationFailed
from tests.conftest import TEST_AUDIT_KEY, make_settings
from tests.integration.audit_support import append_events, as_owner

SIGNING_KEY = generate_signing_key_pem()


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    """Test settings with a signing key for checkpoints."""
    return make_settings(tmp_path, database_url=store_url, audit_signing_key=SIGNING_KEY)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The store engine the service itself would use (SQLite pragmas included)."""
    store = create_store_engine(settings)
    yield store
    await store.dispose()


async def _report(engine: AsyncEngine, checkpoint: object = None):  # type: ignore[no-untyped-def]
    async with AsyncSession(engine) as session:
        return await verify_chain(session, [checkpoint] if checkpoint else [])  # type: ignore[list-item]


async def test_concurrent_writers_produce_one_gap_free_chain(engine: AsyncEngine) -> None:
    async def writer(number: int) -> None:
        for index in range(250):
            async with AsyncSession(engine) as session:
                await append(
                    session,
                    action="test.concurrent",
                    actor=f"writer-{number}",
                    payload={"writer": number, "index": index},
                )
                await session.commit()

    await asyncio.gather(*(writer(n) for n in range(8)))
    await sequence_now(engine)
    async with AsyncSession(engine) as session:
        seqs = list((await session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq))).all())
    assert seqs == list(range(1, 2001))
    report = await _report(engine)
    assert report.ok, report
    assert (report.checked, report.head_seq) == (2000, 2000)


async def test_append_rolls_back_with_the_callers_transaction(engine: AsyncEngine) -> None:
    await append_events(engine, 2)
    async with AsyncSession(engine) as session:
        await append(session, action="test.rolled_back", actor="op")
        await session.rollback()
    await append_events(engine, 1)
    async with AsyncSession(engine) as session:
        actions = (await session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq))).all()
    assert "test.rolled_back" not in actions
    assert (await _report(engine)).head_seq == 3


async def test_payload_with_personal_data_is_refused(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session:
        with pytest.raises(ValidationFailed, match=r"payload\.note"):
            await append(session, action="test.bad", actor="op", payload={"note": "alice@example.com"})


async def _seed_append_only_rows(engine: AsyncEngine) -> None:
    ref = subject_reference(TEST_AUDIT_KEY, None, "email", "seed@example.com")
    committer = GroupCommitter(engine, max_batch=10, queue_size=10)
    committer.start()
    try:
        await record_consent(
            committer,
            NewConsent(
                subject_ref=ref,
                purpose="marketing",
                granted=True,
                policy_version="v1",
                text_hash="a" * 64,
                source="web",
            ),
            actor="op",
        )
    finally:
        await committer.close()
    async with AsyncSession(engine) as session:
        session.add(
            ErasureTombstone(
                id=uuid.uuid4(),
                system="shop",
                subject_key_ref=tombstone_reference(TEST_AUDIT_KEY, "shop", 42),
                erased_at=datetime.now(UTC),
                request_id="req-1",
            )
        )
        await session.commit()
    await sequence_now(engine)


@pytest.mark.parametrize("table", ["audit_event", "consent_event", "erasure_tombstone"])
@pytest.mark.parametrize("statement", ["UPDATE", "DELETE", "TRUNCATE"])
async def test_database_refuses_changes_to_append_only_tables(
    engine: AsyncEngine, table: str, statement: str
) -> None:
    await _seed_append_only_rows(engine)
    sqlite = engine.dialect.name == "sqlite"
    column = "actor" if table != "erasure_tombstone" else "system"
    sql = {
        "UPDATE": f"UPDATE {table} SET {column} = 'changed'",
        "DELETE": f"DELETE FROM {table} WHERE 1 = 1",
        # SQLite has no TRUNCATE: an unqualified DELETE is its equivalent.
        "TRUNCATE": f"DELETE FROM {table}" if sqlite else f"TRUNCATE {table}",
    }[statement]
    async with engine.connect() as connection:
        with pytest.raises(DBAPIError, match="append-only"):
            await connection.execute(text(sql))
        await connection.rollback()
        count = (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
    assert count >= 1


async def test_row_altered_with_triggers_disabled_is_named(engine: AsyncEngine) -> None:
    await append_events(engine, 10)
    await as_owner(engine, "audit_event", "UPDATE audit_event SET actor = 'mallory' WHERE seq = 5")
    report = await _report(engine)
    assert (report.ok, report.broken_seq, report.reason) == (False, 5, "hash_mismatch")


async def test_rehashed_row_breaks_the_next_link(engine: AsyncEngine) -> None:
    await append_events(engine, 10)
    await as_owner(engine, "audit_event", f"UPDATE audit_event SET hash = '{'f' * 64}' WHERE seq = 7")
    report = await _report(engine)
    assert (report.broken_seq, report.reason) == (7, "hash_mismatch")
    async with AsyncSession(engine) as session:  # a forger without the chain key rehashes row 7
        event = await session.get(AuditEvent, 7)
        assert event is not None
    forged = event_hash(
        seq=7,
        occurred_at=event.occurred_at,
        actor="mallory",
        action=event.action,
        request_id=None,
        system=None,
        subject_ref=None,
        payload=event.payload,
        prev_hash=event.prev_hash,
    )
    await as_owner(
        engine,
        "audit_event",
        f"UPDATE audit_event SET actor = 'mallory', hash = '{forged}' WHERE seq = 7",
    )
    report = await _report(engine)
    assert (report.broken_seq, report.reason) == (7, "hash_mismatch")


async def test_deleted_middle_row_is_a_gap(engine: AsyncEngine) -> None:
    await append_events(engine, 6)
    await as_owner(engine, "audit_event", "DELETE FROM audit_event WHERE seq = 3")
    report = await _report(engine)
    assert (report.broken_seq, report.reason) == (3, "gap")


async def test_deleted_tail_is_detected_against_a_checkpoint(engine: AsyncEngine, settings: Settings) -> None:
    await append_events(engine, 10)
    async with AsyncSession(engine) as session:
        checkpoint = await make_checkpoint(session, settings)
    verify_checkpoint_signature(settings, checkpoint)
    assert (checkpoint.seq, (await _report(engine, checkpoint)).ok) == (10, True)

    await as_owner(engine, "audit_event", "DELETE FROM audit_event WHERE seq > 7")
    assert (await _report(engine)).ok  # on its own, a shortened chain still looks consistent
    report = await _report(engine, checkpoint)
    assert (report.ok, report.broken_seq, report.reason) == (False, 8, "truncated")

    await append_events(engine, 3, action="test.rewritten")
    report = await _report(engine, checkpoint)
    assert (report.ok, report.broken_seq, report.reason) == (False, 10, "rewritten")


async def test_forged_checkpoint_is_refused(engine: AsyncEngine, settings: Settings) -> None:
    await append_events(engine, 2)
    async with AsyncSession(engine) as session:
        checkpoint = await make_checkpoint(session, settings)
    forged = msgspec.structs.replace(checkpoint, seq=1)
    with pytest.raises(ValidationFailed, match="signature"):
        verify_checkpoint_signature(settings, forged)


async def test_checkpoint_without_signing_key_names_the_variable(
    engine: AsyncEngine, tmp_path: Path, store_url: str
) -> None:
    unsigned = make_settings(tmp_path, database_url=store_url)
    async with AsyncSession(engine) as session:
        with pytest.raises(Unavailable, match="LETHE_AUDIT_SIGNING_KEY"):
            await make_checkpoint(session, unsigned)


async def test_tombstones_keep_only_the_keys_hmac(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session:
        await add_tombstone(session, TEST_AUDIT_KEY, system="shop", key_value=1234, request_id="r1")
        await add_tombstone(session, TEST_AUDIT_KEY, system="crm", key_value="c-7", request_id="r1")
        await session.commit()
    async with AsyncSession(engine) as session:
        shop = await tombstones_since(session, system="shop")
        everything = await tombstones_since(session, datetime.now(UTC) - timedelta(minutes=1))
        later = await tombstones_since(session, datetime.now(UTC) + timedelta(minutes=1))
    assert [t.subject_key_ref for t in shop] == [tombstone_reference(TEST_AUDIT_KEY, "shop", 1234)]
    assert (len(everything), later) == (2, [])
    assert "1234" not in shop[0].subject_key_ref
