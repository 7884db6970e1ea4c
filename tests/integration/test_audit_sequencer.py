"""The audit sequencer on SQLite and PostgreSQL: crashes, two sequencers, rollbacks, pending events."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.db.audit import AuditEvent, AuditPending, AuditSequencer
from app.db.store import create_store_engine
from app.domain.audit.chain import verify_chain
from app.domain.audit.links import engine_keyring
from app.domain.audit.sequencer import (
    LAG_SECONDS,
    hold_lease,
    integrate,
    run_sequencer,
    sequence_now,
)
from app.domain.audit.services import append
from app.lib.leases import LeaseLost
from tests.conftest import make_settings

Client = AsyncTestClient[Litestar]
Auth = Callable[..., dict[str, str]]


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    """A short lease and a quick poll, so take-overs happen within a test."""
    return make_settings(
        tmp_path,
        database_url=store_url,
        audit_sequencer_lease_seconds="1",
        audit_sequencer_poll_seconds="0.05",
        audit_sequencer_batch_size="7",
    )


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The store engine of one replica."""
    store = create_store_engine(settings)
    yield store
    await store.dispose()


async def _append(engine: AsyncEngine, count: int, writer: str = "w") -> list[uuid.UUID]:
    ids = []
    for index in range(count):
        async with AsyncSession(engine) as session:
            ids.append(await append(session, action="test.event", actor=writer, payload={"index": index}))
            await session.commit()
    return ids


async def _linked(engine: AsyncEngine) -> list[tuple[int, uuid.UUID | None]]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(AuditEvent.seq, AuditEvent.event_id).order_by(AuditEvent.seq))
        return [(int(r[0]), r[1]) for r in rows]


async def _pending(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(AuditPending))).scalar_one())


async def _assert_one_chain(engine: AsyncEngine, appended: list[uuid.UUID]) -> None:
    """Every appended event linked exactly once, seq 1..n without a gap, and the chain verifies."""
    linked = await _linked(engine)
    assert [seq for seq, _ in linked] == list(range(1, len(appended) + 1))
    assert sorted(str(i) for _, i in linked) == sorted(str(i) for i in appended)
    assert await _pending(engine) == 0
    async with AsyncSession(engine) as session:
        report = await verify_chain(session)
    assert (report.ok, report.head_seq, report.pending) == (True, len(appended), 0), report


async def test_a_crash_mid_batch_links_nothing_and_the_next_sequencer_resumes(
    engine: AsyncEngine, settings: Settings
) -> None:
    appended = await _append(engine, 5)
    keyring = engine_keyring(engine.sync_engine.get_execution_options())
    async with AsyncSession(engine) as session, session.begin():
        crashed = await hold_lease(session, "replica-a", 1)
    assert crashed is not None

    session = AsyncSession(engine)
    await session.begin()
    assert len(await integrate(session, keyring, limit=3, holder=crashed, lease_seconds=1)) == 3
    await (await session.connection()).invalidate()  # the process dies before its commit
    await session.close()
    assert (await _linked(engine), await _pending(engine)) == ([], 5)

    async with AsyncSession(engine) as session, session.begin():  # the dead holder's lease holds
        assert await hold_lease(session, "replica-b", 1) is None
    await asyncio.sleep(1.2)
    async with AsyncSession(engine) as session, session.begin():
        successor = await hold_lease(session, "replica-b", 1)
    assert successor is not None
    assert successor.token == (crashed.token or 0) + 1
    appended += await _append(engine, 4)
    async with AsyncSession(engine) as session, session.begin():
        assert len(await integrate(session, keyring, limit=100, holder=successor, lease_seconds=1)) == 9

    # the first sequencer comes back: fenced out, it writes nothing
    appended += await _append(engine, 1)
    with pytest.raises(LeaseLost):
        async with AsyncSession(engine) as session, session.begin():
            await integrate(session, keyring, limit=100, holder=crashed, lease_seconds=1)
    assert await _pending(engine) == 1
    await sequence_now(engine)
    await _assert_one_chain(engine, appended)


async def test_two_sequencers_and_flushes_at_once_never_fork_gap_or_reorder(
    engine: AsyncEngine, settings: Settings
) -> None:
    other_replica = create_store_engine(settings)
    loops = [
        asyncio.create_task(run_sequencer(settings, engine)),
        asyncio.create_task(run_sequencer(settings, other_replica)),
    ]
    try:
        writers = [_append(engine if n % 2 else other_replica, 30, f"writer-{n}") for n in range(4)]
        flushes = [sequence_now(other_replica, batch_size=5) for _ in range(3)]
        results = await asyncio.gather(*writers, *flushes)
        appended = [event for ids in results[:4] for event in ids]  # type: ignore[union-attr]
        for _ in range(100):  # the leaseholder links what is left within its poll interval
            if await _pending(engine) == 0:
                break
            await asyncio.sleep(0.05)
        async with engine.connect() as connection:
            lease = (await connection.execute(select(AuditSequencer.owner, AuditSequencer.fence))).one()
        assert lease.owner is not None
        assert lease.fence >= 1
    finally:
        for loop in loops:
            loop.cancel()
        for loop in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        await other_replica.dispose()
    await _assert_one_chain(engine, appended)
    # each writer's events keep their order in the chain
    linked = [event_id for _, event_id in await _linked(engine)]
    for writer in range(4):
        own = results[writer]
        assert [e for e in linked if e in set(own)] == own  # type: ignore[arg-type, operator]


async def test_a_rolled_back_writer_leaves_no_gap(engine: AsyncEngine) -> None:
    appended = await _append(engine, 2)
    async with AsyncSession(engine) as session:
        await append(session, action="test.rolled_back", actor="op")
        await session.rollback()
    if engine.dialect.name == "postgresql":
        # a writer still in its transaction does not hold the sequencer up, nor the other way round
        async with AsyncSession(engine) as slow:
            late = await append(slow, action="test.late", actor="op")
            appended += await _append(engine, 1)
            await sequence_now(engine)
            assert [seq for seq, _ in await _linked(engine)] == [1, 2, 3]
            await slow.commit()
        appended.append(late)
    appended += await _append(engine, 1)
    before = LAG_SECONDS.collect()[0].samples
    await sequence_now(engine)
    await _assert_one_chain(engine, appended)
    async with engine.connect() as connection:
        actions = (await connection.execute(select(AuditEvent.action))).scalars().all()
    assert "test.rolled_back" not in actions
    count = next(s.value for s in LAG_SECONDS.collect()[0].samples if s.name.endswith("_count"))
    assert count > next(s.value for s in before if s.name.endswith("_count"))


async def test_the_running_sequencer_links_commits_without_being_asked(
    engine: AsyncEngine, settings: Settings
) -> None:
    loop = asyncio.create_task(run_sequencer(settings, engine))
    try:
        appended = await _append(engine, 3)
        for _ in range(100):
            if len(await _linked(engine)) == 3:
                break
            await asyncio.sleep(0.05)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    await _assert_one_chain(engine, appended)
    async with engine.connect() as connection:  # released on shutdown: a standby need not wait
        assert (await connection.execute(select(AuditSequencer.owner))).scalar_one() is None


async def test_pending_events_are_listed_as_such_then_linked_on_read(
    client: Client, auth: Auth, engine: AsyncEngine
) -> None:
    appended = await _append(engine, 2)
    pending = await client.get("/v1/audit/pending", headers=auth("audit:read"))
    assert pending.status_code == 200, pending.text
    items = pending.json()["items"]
    assert [(i["event_id"], "seq" in i) for i in items] == [(str(e), False) for e in appended]

    events = (await client.get("/v1/audit/events", headers=auth("audit:read"))).json()["items"]
    assert [(e["seq"], e["event_id"]) for e in events] == [(1, str(appended[0])), (2, str(appended[1]))]
    assert (await client.get("/v1/audit/pending", headers=auth("audit:read"))).json()["items"] == []
    verified = (await client.get("/v1/audit/verify", headers=auth("audit:read"))).json()
    assert (verified["ok"], verified["head_seq"], verified["pending"]) == (True, 2, 0)


async def test_pending_events_are_immutable(engine: AsyncEngine) -> None:
    await _append(engine, 1)
    async with engine.connect() as connection:
        with pytest.raises(DBAPIError, match="append-only"):
            await connection.execute(AuditPending.__table__.update().values(actor="mallory"))
