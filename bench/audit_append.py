"""Chained audit appends per second on PostgreSQL, against plain INSERT+COMMIT at the same concurrency.

Everything runs in one process, on one pooled engine. Plain = each write its own transaction
through an ``AsyncSession``: one Core INSERT of the same row shape into a copy of
``audit_event`` without triggers, then COMMIT. In-transaction = ``append()`` (payload rules,
INSERT into ``audit_pending``) then COMMIT, each write its own transaction (the path of a state
change that must commit with its event). Group = the event's row (``pending_write``, the same
rules) submitted to the process's ``GroupCommitter``; the writer returns once the batch holding
it is committed. The production sequencer (``run_sequencer``) links the events in batches in the
same process; for both chained paths the timed region ends when the last event is linked into
the chain, so the rate is of durable *chained* events. A consent run (``record_consent``: the
consent row and its audit event, one unit of the group committer) gives the write latency at
that rate, and a second one the same with an ``Idempotency-Key`` (``run_idempotent_unit``: the
key's record, holding the response, is one more row of the unit). Sequencing lag is also read
from the exported histogram (``lethe_audit_sequencing_lag_seconds``), so its p99 is stated as the
bucket it falls in.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import MetaData, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from app.config import Settings
from app.db.audit import AuditEvent, AuditPending
from app.db.group_commit import BATCH_UNITS, GroupCommitter, Write
from app.db.store import upgrade_store
from app.domain.audit.chain import verify_chain
from app.domain.audit.references import subject_reference
from app.domain.audit.sequencer import LAG_SECONDS, run_sequencer, wake_now
from app.domain.audit.services import append, pending_write
from app.domain.consent.services import NewConsent, consent_unit, record_consent
from app.lib.crypto import CHAIN_OPTION, ChainKeyring
from app.lib.idempotency import run_idempotent_unit

__all__ = ("run",)

ADMIN_URL = os.environ.get("LETHE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TOTAL = int(os.environ.get("LETHE_BENCH_AUDIT_APPENDS", "8000"))
GROUP_TOTAL = int(os.environ.get("LETHE_BENCH_AUDIT_GROUP_APPENDS", "24000"))
"""The group path is several times faster from 8 writers: more writes there (at most ``TOTAL``
per writer), so its timed region is not a blink."""
WRITERS = (1, 8, 32, 64)
CONSENT_WRITERS = 32
CHAIN_KEY = b"bench-audit-chain-key-of-at-least-32-bytes"
AUDIT_KEY = "bench-audit-key-of-at-least-32-bytes-long"
PLAIN = AuditEvent.__table__.to_metadata(MetaData(), name="audit_event_plain")
"""The columns and types of ``audit_event``; created by ``LIKE ... INCLUDING ALL`` (no triggers)."""

Writer = Callable[[int, int, list[float]], Awaitable[None]]
Chained = tuple[float, float, float, float, float]
"""chained/s until linked, write p99, commit-to-link lag p99, histogram p99 bucket (seconds), and
this process's CPU seconds per write (writers, group committer and sequencer)"""
Row = tuple[int, float, float, Chained, Chained, float]
Prepared = tuple[list[Write], int, object]
"""writers, plain/s, plain write p99, in-transaction, group, mean units per group commit"""


def _async(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql+asyncpg")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def _settings(url: str) -> Settings:
    return Settings(
        database_url=url,
        audit_key=AUDIT_KEY,
        audit_chain_key=CHAIN_KEY.decode(),
        jwt_secret="bench-jwt-secret-of-at-least-32-bytes-long",  # noqa: S106 - a bench's own
    )


def _chained(engine: AsyncEngine, committed: dict[uuid.UUID, float]) -> Writer:
    async def write(writer: int, count: int, latencies: list[float]) -> None:
        for index in range(count):
            started = time.perf_counter()
            async with AsyncSession(engine) as session:
                event_id = await append(
                    session,
                    action="bench.append",
                    actor=f"writer-{writer}",
                    request_id="bench",
                    payload={"table": "users", "rows": index},
                )
                await session.commit()
            committed[event_id] = time.perf_counter()
            latencies.append(committed[event_id] - started)

    return write


def _grouped(committer: GroupCommitter, committed: dict[uuid.UUID, float]) -> Writer:
    async def write(writer: int, count: int, latencies: list[float]) -> None:
        for index in range(count):
            started = time.perf_counter()
            event_id, row = pending_write(
                action="bench.append",
                actor=f"writer-{writer}",
                request_id="bench",
                payload={"table": "users", "rows": index},
            )
            await committer.submit([row])
            committed[event_id] = time.perf_counter()
            latencies.append(committed[event_id] - started)

    return write


def _plain(engine: AsyncEngine, seqs: list[int]) -> Writer:
    async def write(writer: int, count: int, latencies: list[float]) -> None:
        for index in range(count):
            started = time.perf_counter()
            seqs[0] += 1
            async with AsyncSession(engine) as session:
                await session.execute(
                    insert(PLAIN).values(
                        seq=seqs[0],
                        occurred_at=datetime.now(UTC),
                        actor=f"writer-{writer}",
                        action="bench.append",
                        request_id="bench",
                        system=None,
                        subject_ref=None,
                        payload={"table": "users", "rows": index},
                        prev_hash="0" * 64,
                        hash="0" * 64,
                    )
                )
                await session.commit()
            latencies.append(time.perf_counter() - started)

    return write


def _new_consent(writer: int, index: int) -> NewConsent:
    return NewConsent(
        subject_ref=subject_reference(AUDIT_KEY, None, "email", f"p-{writer}-{index}@example.com"),
        purpose="newsletter",
        granted=index % 2 == 0,
        policy_version="v1",
        text_hash="a" * 64,
        source="bench",
    )


def _consent(committer: GroupCommitter, committed: dict[uuid.UUID, float]) -> Writer:
    async def write(writer: int, count: int, latencies: list[float]) -> None:
        for index in range(count):
            consent = _new_consent(writer, index)
            started = time.perf_counter()
            _, event_id = await record_consent(committer, consent, actor=f"writer-{writer}")
            committed[event_id] = time.perf_counter()
            latencies.append(committed[event_id] - started)

    return write


def _keyed_consent(
    engine: AsyncEngine, committer: GroupCommitter, committed: dict[uuid.UUID, float]
) -> Writer:
    """The path of ``POST /v1/consents`` with an ``Idempotency-Key``: the key's record, holding the
    response, joins the consent's unit (:func:`run_idempotent_unit`)."""

    async def write(writer: int, count: int, latencies: list[float]) -> None:
        for index in range(count):
            consent = _new_consent(writer, index)
            events: list[uuid.UUID] = []

            def prepare(consent: NewConsent = consent, events: list[uuid.UUID] = events) -> Prepared:
                unit = consent_unit(consent, actor=f"writer-{writer}")
                events.append(unit.audit_event_id)
                return unit.writes, 201, {"id": str(unit.event.id)}

            started = time.perf_counter()
            async with AsyncSession(engine) as session:
                response = await run_idempotent_unit(
                    session=session,
                    committer=committer,
                    client_id="bench",
                    key=f"consent-{writer}-{index}-{uuid.uuid4().hex}",
                    operation="consents.create",
                    body={"writer": writer, "index": index},
                    prepare=prepare,
                )
            assert response.status_code == 201
            committed[events[0]] = time.perf_counter()
            latencies.append(committed[events[0]] - started)

    return write


async def _drained(engine: AsyncEngine) -> None:
    while True:
        async with engine.connect() as connection:
            left = (await connection.execute(select(func.count()).select_from(AuditPending))).scalar_one()
        if left == 0:
            return
        await asyncio.sleep(0.005)


async def _watch_links(engine: AsyncEngine, linked: dict[uuid.UUID, float], stop: asyncio.Event) -> None:
    """Note when each event becomes visible in the chain, as a reader polling every 25 ms sees it."""
    async with engine.connect() as connection:
        after = (await connection.execute(select(func.coalesce(func.max(AuditEvent.seq), 0)))).scalar_one()
        await connection.commit()
        columns = select(AuditEvent.seq, AuditEvent.event_id).order_by(AuditEvent.seq)
        while True:
            last_poll = stop.is_set()  # set once everything is linked: one more poll sees the rest
            rows = (await connection.execute(columns.where(AuditEvent.seq > after))).all()
            await connection.commit()
            seen = time.perf_counter()
            for seq, event_id in rows:
                linked[event_id] = seen
                after = seq
            if last_poll:
                return
            await asyncio.sleep(0.025)


def _commit_to_link_p99(committed: dict[uuid.UUID, float], linked: dict[uuid.UUID, float]) -> float:
    return _p99([max(0.0, linked[e] - at) for e, at in committed.items()])


def _lag_buckets() -> dict[float, float]:
    return {
        float(s.labels["le"]): s.value for s in LAG_SECONDS.collect()[0].samples if s.name.endswith("_bucket")
    }


def _lag_p99(before: dict[float, float]) -> float:
    after = _lag_buckets()
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = counts[float("inf")]
    return next(bound for bound, cumulative in counts.items() if cumulative >= 0.99 * total)


def _p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def _rate(
    writers: int, work: Writer, drain: AsyncEngine | None = None, total: int = TOTAL
) -> tuple[float, float]:
    """Writes/s (until the last is linked, when ``drain``) and the p99 write latency in seconds."""
    per_writer = total // writers
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(work(n, per_writer, latencies) for n in range(writers)))
    if drain is not None:
        await _drained(drain)
    return per_writer * writers / (time.perf_counter() - started), _p99(latencies)


def _batch_units() -> tuple[float, float]:
    """(units, commits) observed so far by the group committer's histogram."""
    samples = {s.name: s.value for s in BATCH_UNITS.collect()[0].samples}
    return samples["lethe_group_commit_batch_units_sum"], samples["lethe_group_commit_batch_units_count"]


async def _chained_rate(
    engine: AsyncEngine, writers: int, work: Callable[[dict[uuid.UUID, float]], Writer], total: int
) -> Chained:
    """Chained writes/s until the last is linked, write p99, lag p99 and its histogram bucket."""
    committed: dict[uuid.UUID, float] = {}
    linked: dict[uuid.UUID, float] = {}
    stop = asyncio.Event()
    before = _lag_buckets()
    watcher = asyncio.create_task(_watch_links(engine, linked, stop))
    cpu = time.process_time()
    try:
        rate, p99 = await _rate(writers, work(committed), drain=engine, total=total)
        cpu = (time.process_time() - cpu) / len(committed)
    finally:
        stop.set()
        await watcher
    return rate, p99, _commit_to_link_p99(committed, linked), _lag_p99(before), cpu


async def _measure(url: str) -> tuple[list[Row], Chained, Chained]:
    settings = _settings(url)
    keyring = ChainKeyring(1, {1: CHAIN_KEY})
    engine = create_async_engine(
        url, pool_size=max(WRITERS) + 4, max_overflow=0, execution_options={CHAIN_OPTION: keyring}
    )
    committer = GroupCommitter(
        engine,
        max_batch=settings.group_commit_batch_size,
        queue_size=settings.group_commit_queue_size,
        after_commit=wake_now,
    )
    try:
        await upgrade_store(engine)
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE audit_event_plain (LIKE audit_event INCLUDING ALL)"))
        sequencer = asyncio.create_task(run_sequencer(settings, engine))
        committer.start()
        seqs = [0]
        rows = []
        linked = 0
        for writers in WRITERS:
            plain, plain_p99 = await _rate(writers, _plain(engine, seqs))
            in_transaction = await _chained_rate(engine, writers, lambda done: _chained(engine, done), TOTAL)
            units, commits = _batch_units()
            group_total = min(GROUP_TOTAL, TOTAL * writers)
            group = await _chained_rate(engine, writers, lambda done: _grouped(committer, done), group_total)
            units_after, commits_after = _batch_units()
            linked += TOTAL // writers * writers + group_total // writers * writers
            per_commit = (units_after - units) / max(1.0, commits_after - commits)
            rows.append((writers, plain, plain_p99, in_transaction, group, per_commit))
        consent = await _chained_rate(
            engine, CONSENT_WRITERS, lambda done: _consent(committer, done), GROUP_TOTAL
        )
        keyed = await _chained_rate(
            engine, CONSENT_WRITERS, lambda done: _keyed_consent(engine, committer, done), GROUP_TOTAL
        )
        linked += 2 * (GROUP_TOTAL // CONSENT_WRITERS * CONSENT_WRITERS)
        await committer.close()
        sequencer.cancel()
        await asyncio.gather(sequencer, return_exceptions=True)
        async with AsyncSession(engine) as session:
            report = await verify_chain(session)
        assert report.ok, report
        assert (report.head_seq, report.pending) == (linked, 0), report
        return rows, consent, keyed
    finally:
        await committer.close()
        await engine.dispose()


async def _main() -> tuple[list[Row], Chained, Chained]:
    name = f"lethe_bench_audit_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(_async(ADMIN_URL), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            return await _measure(_async(ADMIN_URL, name))
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def run() -> str:
    """Measure and return the Markdown section for RESULTS.md."""
    load_before = os.getloadavg()
    rows, (consent_rate, consent_p99, consent_lag, consent_bucket, consent_cpu), keyed = asyncio.run(_main())
    load_after = os.getloadavg()
    lines = [
        "## Audit log: chained appends vs plain INSERT+COMMIT (PostgreSQL)",
        "",
        f"`LETHE_BENCH_POSTGRES_URL=... python -m bench audit_append` — one process, one pooled "
        "engine (asyncpg), every side in the same run. **Plain** = INSERT of the same row shape into "
        "a trigger-less copy of `audit_event` + COMMIT, each write its own transaction through an "
        f"`AsyncSession` on a pooled connection ({TOTAL} writes). **In-transaction** = `append()` "
        "(payload rules, INSERT into `audit_pending`) + COMMIT, each write its own transaction, the "
        f"path of a state change that commits with its event ({TOTAL} writes). **Group** = the same "
        "event row submitted to the process's `GroupCommitter` (one writer task, every unit waiting "
        "at that moment in one transaction: one executemany, one commit); a writer's call returns "
        f"once its event is committed ({TOTAL} writes at 1 writer, {GROUP_TOTAL} from 8). For both "
        "chained paths the production "
        "sequencer (`run_sequencer`, batches of up to 1,000, one commit each, keyed HMAC links) runs "
        "in the same process, and the timed region runs from the first write to the last event "
        "linked into the chain, so chained/s counts durable *chained* events. Write p99 = one "
        "writer's call until its commit returned. Lag = from that commit to the event being "
        "visible in the chain to a reader polling every 25 ms; the exported histogram "
        "`lethe_audit_sequencing_lag_seconds` (append to link) is given as the bucket its p99 "
        "falls in. CPU = this process's CPU time (writers, group committer, sequencer, the lag "
        "reader) over the timed region, per write: what a write costs whatever the load. With every "
        "writer waiting for its own commit, n writers cannot exceed n / (commit latency) writes/s "
        "(Little's law): the figures below follow this machine's fsync latency at the time. "
        "The chain is verified at the end (every event linked, no gap). "
        f"Load average (1/5/15 min): {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f} "
        f"before, {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f} after, on "
        f"{os.cpu_count()} CPUs shared with other jobs.",
        "",
        "| writers | plain INSERTs/s | group chained/s | group / plain | in-transaction chained/s "
        "| in-tx / plain | plain p99 ms | group p99 ms | in-tx p99 ms | units per group commit "
        "| group lag p99 ms | in-tx lag p99 ms | histogram p99 (group) | CPU us per write group / in-tx |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {w} | {p:,.0f} | {g[0]:,.0f} | {g[0] / p:.2f} | {t[0]:,.0f} | {t[0] / p:.2f} "
        f"| {pp * 1000:.1f} | {g[1] * 1000:.1f} | {t[1] * 1000:.1f} | {units:.1f} "
        f"| {g[2] * 1000:.0f} | {t[2] * 1000:.0f} | <= {g[3]:g} s | {g[4] * 1e6:.0f} / {t[4] * 1e6:.0f} |"
        for w, p, pp, t, g, units in rows
    ]
    lines += [
        "",
        f"Consent writes (`record_consent`: consent row + audit event, one unit of the group "
        f"committer) at {CONSENT_WRITERS} writers, {GROUP_TOTAL} writes: {consent_rate:,.0f}/s linked, "
        f"write p99 {consent_p99 * 1000:.1f} ms, commit-to-link lag p99 {consent_lag * 1000:.0f} ms "
        f"(histogram p99 <= {consent_bucket:g} s), {consent_cpu * 1e6:.0f} us of CPU per write. "
        f"With an `Idempotency-Key` (`run_idempotent_unit`: the key's record, holding the response, "
        f"one more row of the unit; a new key each): {keyed[0]:,.0f}/s linked, write p99 "
        f"{keyed[1] * 1000:.1f} ms, commit-to-link lag p99 {keyed[2] * 1000:.0f} ms, "
        f"{keyed[4] * 1e6:.0f} us of CPU per write.",
    ]
    return "\n".join(lines) + "\n"
