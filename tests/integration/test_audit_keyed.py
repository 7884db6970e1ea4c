"""The keyed audit chain: forged inserts, re-anchoring, key rotation, and the checkpoint sink."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.db.audit import AuditEvent
from app.db.store import create_store_engine
from app.domain.audit.chain import ChainReport, append_to_sink, read_sink, sink_checkpoints, verify_chain
from app.domain.audit.jobs import write_checkpoints_forever
from app.domain.audit.links import CHAIN_KEYED_ACTION, GENESIS_HASH, event_hash
from app.lib.crypto import generate_signing_key_pem
from tests.conftest import TEST_CHAIN_KEY, make_settings
from tests.integration.audit_support import append_events, as_owner

SIGNING_KEY = generate_signing_key_pem()
RUNTIME_GRANTS = (
    "REVOKE ALL ON audit_event, consent_event, erasure_tombstone FROM {role}",
    "GRANT SELECT, INSERT ON audit_event, consent_event, erasure_tombstone TO {role}",
)
"""The grants migration 0002 documents for the runtime role."""


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    return make_settings(
        tmp_path,
        database_url=store_url,
        audit_signing_key=SIGNING_KEY,
        audit_checkpoint_path=str(tmp_path / "witness" / "checkpoints.jsonl"),
    )


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    store = create_store_engine(settings)
    yield store
    await store.dispose()


async def _verify(engine: AsyncEngine, settings: Settings | None = None) -> ChainReport:
    async with AsyncSession(engine) as session:
        return await verify_chain(session, sink_checkpoints(settings) if settings else [])


async def _head(engine: AsyncEngine) -> AuditEvent:
    async with AsyncSession(engine) as session:
        event = (await session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))).first()
        assert event is not None
        return event


def _forgery(head: AuditEvent, epoch: int) -> dict[str, object]:
    """The next event as someone without the chain key can write it: a recomputed SHA-256 link."""
    fields: dict[str, object] = {
        "seq": head.seq + 1,
        "occurred_at": datetime.now(UTC),
        "actor": "mallory",
        "action": "request.approved",
        "request_id": None,
        "system": None,
        "subject_ref": None,
        "payload": {"kind": "erasure"},
        "prev_hash": head.hash,
    }
    return {**fields, "hash": event_hash(**fields), "epoch": epoch}  # type: ignore[arg-type]


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("epoch", [0, 1])
async def test_event_inserted_by_the_runtime_role_fails_at_its_seq(
    engine: AsyncEngine, settings: Settings, epoch: int
) -> None:
    await append_events(engine, 4)
    role = f"lethe_runtime_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as connection:
        await connection.execute(text(f"CREATE ROLE {role}"))
        for grant in RUNTIME_GRANTS:
            await connection.execute(text(grant.format(role=role)))
    head = await _head(engine)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"SET LOCAL ROLE {role}"))
            with pytest.raises(DBAPIError, match=r"append-only|permission denied"):
                async with connection.begin_nested():
                    await connection.execute(text("UPDATE audit_event SET actor = 'x' WHERE seq = 1"))
            await connection.execute(insert(AuditEvent).values(**_forgery(head, epoch)))
        report = await _verify(engine)
        assert (report.ok, report.broken_seq) == (False, head.seq + 1)
        assert report.reason == ("epoch" if epoch == 0 else "hash_mismatch")
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP OWNED BY {role}"))
            await connection.execute(text(f"DROP ROLE {role}"))


async def test_a_legacy_chain_is_anchored_by_the_first_keyed_event(engine: AsyncEngine) -> None:
    """Events of before the chain key (epoch 0) stay verifiable; a rewrite of them is caught."""
    prev = GENESIS_HASH
    async with engine.begin() as connection:
        for seq in (1, 2, 3):
            fields: dict[str, object] = {
                "seq": seq,
                "occurred_at": datetime.now(UTC),
                "actor": "op",
                "action": "test.legacy",
                "request_id": None,
                "system": None,
                "subject_ref": None,
                "payload": {"index": seq},
                "prev_hash": prev,
            }
            prev = event_hash(**fields)  # type: ignore[arg-type,assignment]
            await connection.execute(insert(AuditEvent).values(**fields, hash=prev, epoch=0))
    await append_events(engine, 2)
    async with AsyncSession(engine) as session:
        events = (await session.scalars(select(AuditEvent).order_by(AuditEvent.seq))).all()
    assert [(e.seq, e.action, e.epoch) for e in events[3:]] == [
        (4, CHAIN_KEYED_ACTION, 1),
        (5, "test.event", 1),
        (6, "test.event", 1),
    ]
    assert events[3].payload == {"from_epoch": 0, "to_epoch": 1, "anchored_seq": 3}
    assert (await _verify(engine)).ok

    # An owner rewrites legacy event 2 and recomputes the SHA-256 links after it: the keyed
    # anchoring event still names the old head, so the chain breaks there.
    await as_owner(engine, "audit_event", "UPDATE audit_event SET actor = 'mallory' WHERE seq = 2")
    async with AsyncSession(engine) as session:
        rows = (
            await session.scalars(select(AuditEvent).where(AuditEvent.seq <= 3).order_by(AuditEvent.seq))
        ).all()
    prev = rows[0].hash
    statements = []
    for row in rows[1:]:
        link = event_hash(
            seq=row.seq,
            occurred_at=row.occurred_at,
            actor=row.actor,
            action=row.action,
            request_id=None,
            system=None,
            subject_ref=None,
            payload=row.payload,
            prev_hash=prev,
        )
        statements.append(
            f"UPDATE audit_event SET prev_hash = '{prev}', hash = '{link}' WHERE seq = {row.seq}"
        )
        prev = str(link)
    await as_owner(engine, "audit_event", *statements)
    report = await _verify(engine)
    assert (report.ok, report.broken_seq, report.reason) == (False, 4, "broken_link")


async def test_rotation_keeps_old_epochs_verifiable(tmp_path: Path, store_url: str) -> None:
    first = make_settings(tmp_path, database_url=store_url)
    old = create_store_engine(first)
    await append_events(old, 2)
    await old.dispose()
    rotated = make_settings(
        tmp_path,
        database_url=store_url,
        audit_chain_key="a-brand-new-chain-key-of-at-least-32-bytes",
        audit_chain_epoch="2",
        audit_chain_previous_keys=f"1:{TEST_CHAIN_KEY}",
    )
    engine = create_store_engine(rotated)
    try:
        await append_events(engine, 1)
        async with AsyncSession(engine) as session:
            events = (await session.scalars(select(AuditEvent).order_by(AuditEvent.seq))).all()
        assert [(e.epoch, e.action) for e in events] == [
            (1, "test.event"),
            (1, "test.event"),
            (2, CHAIN_KEYED_ACTION),
            (2, "test.event"),
        ]
        assert (await _verify(engine)).ok
    finally:
        await engine.dispose()
    forgetful = make_settings(
        tmp_path,
        database_url=store_url,
        audit_chain_key="a-brand-new-chain-key-of-at-least-32-bytes",
        audit_chain_epoch="2",
    )
    engine = create_store_engine(forgetful)
    try:
        report = await _verify(engine)
        assert (report.ok, report.broken_seq, report.reason) == (False, 1, "epoch")
    finally:
        await engine.dispose()


async def test_the_sink_names_the_first_rewritten_seq_and_a_cut_tail(
    engine: AsyncEngine, settings: Settings
) -> None:
    await append_events(engine, 5)
    async with AsyncSession(engine) as session:
        assert (await append_to_sink(session, settings)) is not None
        assert (await append_to_sink(session, settings)) is None  # nothing new: nothing written
    await append_events(engine, 5)
    async with AsyncSession(engine) as session:
        await append_to_sink(session, settings)
    assert [c.seq for c in read_sink(Path(str(settings.audit_checkpoint_path)))] == [5, 10]
    assert (await _verify(engine, settings)).ok

    await as_owner(engine, "audit_event", "DELETE FROM audit_event WHERE seq > 7")
    assert (await _verify(engine)).ok  # the database alone cannot tell
    report = await _verify(engine, settings)
    assert (report.ok, report.broken_seq, report.reason) == (False, 8, "truncated")

    await append_events(engine, 3, action="test.rewritten")
    report = await _verify(engine, settings)
    assert (report.ok, report.broken_seq, report.reason) == (False, 8, "rewritten")


async def test_the_background_writer_fills_the_sink(engine: AsyncEngine, settings: Settings) -> None:
    await append_events(engine, 3)
    fast = make_settings(
        Path(str(settings.audit_checkpoint_path)).parent.parent,
        database_url=settings.database_url,
        audit_signing_key=SIGNING_KEY,
        audit_checkpoint_path=str(settings.audit_checkpoint_path),
        audit_checkpoint_interval_seconds="0.05",
    )
    task = asyncio.create_task(write_checkpoints_forever(fast, engine))
    try:
        for _ in range(100):
            if read_sink(Path(str(settings.audit_checkpoint_path))):
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [c.seq for c in read_sink(Path(str(settings.audit_checkpoint_path)))] == [3]
