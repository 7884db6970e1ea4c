"""The group committer on SQLite and PostgreSQL: consents and their audit events, many callers per
commit, a refused unit failing only its caller, draining on shutdown, no answer before the commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from litestar import Response
from sqlalchemy import Column, Integer, MetaData, Table, func, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.audit import AuditEvent, AuditPending, ConsentEvent
from app.db.group_commit import BATCH_UNITS, RETRIED, GroupCommitter, Write
from app.db.store import create_store_engine
from app.domain.audit.chain import verify_chain
from app.domain.audit.references import subject_reference
from app.domain.audit.sequencer import sequence_now
from app.domain.consent.services import NewConsent, consent_unit, record_consent
from app.lib.errors import IdempotencyConflict, Unavailable
from app.lib.idempotency import run_idempotent_unit
from tests.conftest import TEST_AUDIT_KEY

PROBES = MetaData()
PROBE_CHILD = Table(
    "probe_child", PROBES, Column("id", Integer, primary_key=True), Column("parent_id", Integer)
)
DANGLING = insert(PROBE_CHILD)
"""A row whose parent does not exist: refused by a deferred foreign key, i.e. at COMMIT."""


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The service's own store engine (SQLite pragmas, foreign keys on), with a probe table whose
    foreign key is checked only at commit."""
    store = create_store_engine(settings)
    async with store.begin() as connection:
        await connection.execute(text("CREATE TABLE probe_parent (id INTEGER PRIMARY KEY)"))
        await connection.execute(
            text(
                "CREATE TABLE probe_child (id INTEGER PRIMARY KEY, parent_id INTEGER "
                "REFERENCES probe_parent (id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    yield store
    await store.dispose()


@pytest.fixture
async def committer(engine: AsyncEngine) -> AsyncIterator[GroupCommitter]:
    """A running committer (batches of up to 64 units)."""
    writer = GroupCommitter(engine, max_batch=64, queue_size=256)
    writer.start()
    yield writer
    await writer.close()


def _consent(writer: int, index: int) -> NewConsent:
    return NewConsent(
        subject_ref=subject_reference(TEST_AUDIT_KEY, None, "email", f"p{writer}-{index}@example.com"),
        purpose="newsletter",
        granted=index % 2 == 0,
        policy_version="v1",
        text_hash="a" * 64,
        source="test",
    )


async def _count(engine: AsyncEngine, table: type[ConsentEvent] | type[AuditPending]) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


def _retried() -> float:
    return next(s.value for s in RETRIED.collect()[0].samples if s.name.endswith("_total"))


def _histogram() -> tuple[float, float]:
    samples = {s.name: s.value for s in BATCH_UNITS.collect()[0].samples}
    return samples["lethe_group_commit_batch_units_sum"], samples["lethe_group_commit_batch_units_count"]


async def test_concurrent_consents_share_commits_and_each_has_one_audit_event(
    engine: AsyncEngine, committer: GroupCommitter
) -> None:
    units_before, commits_before = _histogram()

    async def writer(number: int) -> list[str]:
        recorded = []
        for index in range(10):
            event, _ = await record_consent(committer, _consent(number, index), actor=f"writer-{number}")
            recorded.append(str(event.id))
        return recorded

    recorded = [event_id for ids in await asyncio.gather(*(writer(n) for n in range(32))) for event_id in ids]
    units_after, commits_after = _histogram()
    assert units_after - units_before == 320
    assert commits_after - commits_before < 320 / 4  # callers shared commits
    assert await sequence_now(engine) == 320
    async with AsyncSession(engine) as session:
        consents = set((await session.scalars(select(ConsentEvent.id))).all())
        mirrored = [
            event.payload["consent_event_id"]
            for event in (await session.scalars(select(AuditEvent).order_by(AuditEvent.seq))).all()
        ]
        report = await verify_chain(session)
    assert {str(c) for c in consents} == set(recorded)
    assert sorted(mirrored) == sorted(recorded)  # exactly one audit event per consent
    assert report.ok, report
    assert (report.head_seq, report.pending) == (320, 0)


async def test_keyed_units_share_commits_and_a_key_used_before_replays(
    engine: AsyncEngine, committer: GroupCommitter
) -> None:
    """``run_idempotent_unit``: the key's record, holding the response, is one more row of the
    unit, so keyed callers share commits too; a key used before fails its unit on the record's
    primary key alone and answers with the stored response (or 422 for another body)."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def call(number: int, key: str, body: object) -> Response[bytes]:
        def prepare() -> tuple[list[Write], int, object]:
            unit = consent_unit(_consent(9, number), actor="op")
            return list(unit.writes), 201, {"consent": str(unit.event.id)}

        async with sessions() as session:
            return await run_idempotent_unit(
                session=session,
                committer=committer,
                client_id="client",
                key=key,
                operation="consents.create",
                body=body,
                prepare=prepare,
            )

    units, commits = _histogram()
    answers = await asyncio.gather(*(call(n, f"key-{n}", {"n": n}) for n in range(32)))
    assert [a.status_code for a in answers] == [201] * 32
    units_after, commits_after = _histogram()
    assert units_after - units == 32
    assert commits_after - commits < 32 / 4  # callers shared commits
    assert await _count(engine, ConsentEvent) == 32

    again = await asyncio.gather(*(call(n + 100, f"key-{n}", {"n": n}) for n in range(32)))
    assert [a.content for a in again] == [a.content for a in answers]  # the first answers, replayed
    assert {a.headers["Idempotent-Replayed"] for a in again} == {"true"}
    assert await _count(engine, ConsentEvent) == 32  # nothing written again
    with pytest.raises(IdempotencyConflict):
        await call(200, "key-0", {"n": "another body"})
    assert await _count(engine, ConsentEvent) == 32


async def test_a_refused_unit_fails_only_its_caller(engine: AsyncEngine, committer: GroupCommitter) -> None:
    taken = consent_unit(_consent(0, 0), actor="op")
    await committer.submit(taken.writes)
    retried = _retried()
    duplicate = consent_unit(_consent(0, 1), actor="op")
    duplicate.writes[0].params["id"] = taken.event.id  # the consent's primary key is taken
    units = [consent_unit(_consent(1, index), actor="op") for index in range(20)]
    outcomes = await asyncio.gather(
        *(committer.submit(unit.writes) for unit in units[:10]),
        committer.submit(duplicate.writes),
        *(committer.submit(unit.writes) for unit in units[10:]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[10], IntegrityError)
    assert outcomes[:10] + outcomes[11:] == [None] * 20
    assert _retried() == retried + 1  # one batch, refused, then written unit by unit
    async with AsyncSession(engine) as session:
        consents = set((await session.scalars(select(ConsentEvent.id))).all())
        events = set((await session.scalars(select(AuditPending.event_id))).all())
    assert consents == {taken.event.id, *(unit.event.id for unit in units)}
    assert duplicate.audit_event_id not in events  # the refused unit wrote nothing, not even its event
    assert events == {taken.audit_event_id, *(unit.audit_event_id for unit in units)}


async def test_a_commit_refused_fails_its_caller_with_nothing_written(
    engine: AsyncEngine, committer: GroupCommitter
) -> None:
    refused = consent_unit(_consent(0, 0), actor="op")
    others = [consent_unit(_consent(1, index), actor="op") for index in range(5)]
    dangling = Write(DANGLING, {"id": 1, "parent_id": 404})
    outcomes = await asyncio.gather(
        committer.submit([*refused.writes, dangling]),
        *(committer.submit(unit.writes) for unit in others),
        return_exceptions=True,
    )
    # the rows were accepted and only the COMMIT refused them: the caller was not answered before
    assert isinstance(outcomes[0], IntegrityError)
    assert outcomes[1:] == [None] * 5
    async with AsyncSession(engine) as session:
        consents = set((await session.scalars(select(ConsentEvent.id))).all())
        events = set((await session.scalars(select(AuditPending.event_id))).all())
    assert consents == {unit.event.id for unit in others}
    assert events == {unit.audit_event_id for unit in others}


async def test_shutdown_writes_every_queued_unit_then_refuses(engine: AsyncEngine) -> None:
    writer = GroupCommitter(engine, max_batch=8, queue_size=1000)
    writer.start()
    units = [consent_unit(_consent(0, index), actor="op") for index in range(200)]
    submitted = [asyncio.create_task(writer.submit(unit.writes)) for unit in units]
    await asyncio.sleep(0)  # every unit is queued; at most the first batch has started
    await writer.close()
    assert all(task.done() and task.exception() is None for task in submitted)
    assert await _count(engine, ConsentEvent) == 200
    assert await _count(engine, AuditPending) == 200
    with pytest.raises(Unavailable):
        await writer.submit(consent_unit(_consent(1, 0), actor="op").writes)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)  # a backend to end mid-COMMIT
async def test_a_connection_lost_during_commit_fails_the_caller_with_nothing_written(
    engine: AsyncEngine, committer: GroupCommitter
) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE FUNCTION probe_slow() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$"
            )
        )
        await connection.execute(
            text(
                "CREATE CONSTRAINT TRIGGER probe_slow AFTER INSERT ON probe_child DEFERRABLE "
                "INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION probe_slow()"
            )
        )
        await connection.execute(text("INSERT INTO probe_parent (id) VALUES (1)"))
    unit = consent_unit(_consent(0, 0), actor="op")
    caller = asyncio.create_task(committer.submit([*unit.writes, Write(DANGLING, {"id": 1, "parent_id": 1})]))
    killed = 0
    async with engine.connect() as connection:
        for _ in range(200):  # the writer's COMMIT runs the deferred trigger: end its backend there
            killed = (
                await connection.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event = 'PgSleep'"
                    )
                )
            ).scalar_one()
            await connection.commit()
            if killed:
                break
            assert not caller.done()
            await asyncio.sleep(0.05)
    assert killed == 1
    with pytest.raises(DBAPIError):
        await caller
    assert await _count(engine, ConsentEvent) == 0
    assert await _count(engine, AuditPending) == 0
    await record_consent(committer, _consent(1, 0), actor="op")  # the writer goes on
    assert await _count(engine, ConsentEvent) == 1
