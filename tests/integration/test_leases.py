"""The one lease scheme on real stores: one winner, fenced writes, expiry, claim order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import DateTime, Integer, String, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.lib.clock import utcnow
from app.lib.leases import Holder, LeaseLost, LeaseTable


class _Base(DeclarativeBase):
    pass


class Job(_Base):
    """A leasable row as a delivery worker's outbox would have it."""

    __tablename__ = "lease_test_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    result: Mapped[str | None] = mapped_column(String(20), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


LEASE = LeaseTable(
    key=Job.id,
    owner=Job.lease_owner,
    expires_at=Job.lease_expires_at,
    token=Job.attempt,
    heartbeat_at=Job.heartbeat_at,
)
BY_OWNER = LeaseTable(key=Job.id, owner=Job.lease_owner, expires_at=Job.lease_expires_at)


@pytest.fixture
async def sessions(store_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine: AsyncEngine = create_async_engine(store_url)
    async with engine.begin() as connection:
        await connection.run_sync(_Base.metadata.create_all)
        await connection.execute(
            Job.__table__.insert(),
            [{"id": i, "state": "ready", "attempt": 0} for i in (1, 2, 3)],
        )
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def _acquire(
    sessions: async_sessionmaker[AsyncSession], owner: str, now: datetime | None = None
) -> Holder | None:
    async with sessions.begin() as session:
        return await LEASE.acquire(session, 1, owner=owner, seconds=30, now=now)


async def test_of_concurrent_acquirers_exactly_one_wins(sessions: async_sessionmaker[AsyncSession]) -> None:
    holders = await asyncio.gather(*(_acquire(sessions, f"replica-{i}") for i in range(4)))
    winners = [h for h in holders if h is not None]
    assert len(winners) == 1
    assert winners[0].token == 1
    assert await _acquire(sessions, "late") is None, "a live lease is not taken"


async def test_a_stale_holder_is_fenced_out_and_its_write_rolled_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    stale = await _acquire(sessions, "stale")
    assert stale is not None
    later = utcnow() + timedelta(seconds=31)  # the stale holder's lease has run out by then
    fresh = await _acquire(sessions, "fresh", now=later)
    assert fresh is not None
    assert fresh.token == 2

    async def stale_write() -> None:
        async with sessions.begin() as session:
            await session.execute(update(Job).where(Job.id == 1).values(result="stale"))
            await LEASE.renew(session, stale, seconds=30)

    with pytest.raises(LeaseLost):
        await stale_write()
    async with sessions.begin() as session:
        await LEASE.renew(session, fresh, seconds=30)
        await session.execute(update(Job).where(Job.id == 1).values(result="fresh"))
    async with sessions() as session:
        row = await session.get(Job, 1)
        assert row is not None
        assert (row.result, row.lease_owner, row.attempt) == ("fresh", "fresh", 2)


async def test_release_frees_the_row_and_only_for_its_holder(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        first = await BY_OWNER.acquire(session, 2, owner="a", seconds=30)
        assert first is not None
        assert await BY_OWNER.acquire(session, 2, owner="b", seconds=30) is None
        assert not await BY_OWNER.release(session, Holder(key=2, owner="b"))
        assert await BY_OWNER.release(session, first)
        assert await BY_OWNER.acquire(session, 2, owner="b", seconds=30) is not None


async def test_claim_next_takes_the_first_ready_row_and_reads_its_columns(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = utcnow()
    claimed = []
    for owner in ("w1", "w2", "w3", "w4"):
        async with sessions.begin() as session:
            holder = await LEASE.claim_next(
                session,
                owner=owner,
                seconds=30,
                ready=(Job.state == "ready") & LEASE.free(now),
                order_by=(Job.id,),
                columns=(Job.state,),
                values={"state": "running"},
                now=now,
            )
            claimed.append(None if holder is None else (holder.key, holder.row, holder.token))
    assert claimed == [(1, ("ready",), 1), (2, ("ready",), 1), (3, ("ready",), 1), None]
    async with sessions() as session:
        owners = (await session.scalars(select(Job.lease_owner).order_by(Job.id))).all()
    assert owners == ["w1", "w2", "w3"]
