"""Chained audit appends per second on PostgreSQL, against plain INSERT+COMMIT at the same concurrency.

Both sides run in one process, on one pooled engine, each write its own transaction through an
``AsyncSession`` (as a feature records one action). Plain = one Core INSERT of the same row shape
into a copy of ``audit_event`` without triggers, then COMMIT. Chained = ``append()`` (payload
rules, INSERT into ``audit_pending``) then COMMIT, while the production sequencer
(``run_sequencer``) links the events in batches in the same process; the timed region ends when
the last event is linked into the chain, so the rate is of durable *chained* events. A consent
run (``record_consent``: the consent row and its audit event, one transaction) gives the write
latency at that rate. Sequencing lag is read from the exported histogram
(``lethe_audit_sequencing_lag_seconds``), so its p99 is stated as the bucket it falls in.
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
from app.db.store import upgrade_store
from app.domain.audit.chain import verify_chain
from app.domain.audit.references import subject_reference
from app.domain.audit.sequencer import LAG_SECONDS, run_sequencer
from app.domain.audit.services import append
from app.domain.consent.services import NewConsent, record_consent
from app.lib.crypto import CHAIN_OPTION, ChainKeyring

__all__ = ("run",)

ADMIN_URL = os.environ.get("LETHE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TOTAL = int(os.environ.get("LETHE_BENCH_AUDIT_APPENDS", "8000"))
WRITERS = (1, 8, 32, 64)
CONSENT_WRITERS = 32
CHAIN_KEY = b"bench-audit-chain-key-of-at-least-32-bytes"
AUDIT_KEY = "bench-audit-key-of-at-least-32-bytes-long"
PLAIN = AuditEvent.__table__.to_metadata(MetaData(), name="audit_event_plain")
"""The columns and types of ``audit_event``; created by ``LIKE ... INCLUDING ALL`` (no triggers)."""

Writer = Callable[[int, int, list[float]], Awaitable[None]]
Row = tuple[int, float, float, float, float, float, float]
"""writers, chained/s, chained write p99, plain/s, plain write p99, lag p99, histogram p99 bucket"""
Consent = tuple[float, float, float, float]
"""consent writes/s, write p99, lag p99, histogram p99 bucket"""


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


def _consent(engine: AsyncEngine, committed: dict[uuid.UUID, float]) -> Writer:
    async def write(writer: int, count: int, latencies: list[float]) -> None:
        for index in range(count):
            consent = NewConsent(
                subject_ref=subject_reference(AUDIT_KEY, None, "email", f"p-{writer}-{index}@example.com"),
                purpose="newsletter",
                granted=index % 2 == 0,
                policy_version="v1",
                text_hash="a" * 64,
                source="bench",
            )
            started = time.perf_counter()
            async with AsyncSession(engine) as session:
                _, event_id = await record_consent(session, consent, actor=f"writer-{writer}")
                await session.commit()
            committed[event_id] = time.perf_counter()
            latencies.append(committed[event_id] - started)

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


async def _rate(writers: int, work: Writer, drain: AsyncEngine | None = None) -> tuple[float, float]:
    """Writes/s (until the last is linked, when ``drain``) and the p99 write latency in seconds."""
    per_writer = TOTAL // writers
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(work(n, per_writer, latencies) for n in range(writers)))
    if drain is not None:
        await _drained(drain)
    return per_writer * writers / (time.perf_counter() - started), _p99(latencies)


async def _chained_rate(
    engine: AsyncEngine, writers: int, make: Callable[[AsyncEngine, dict[uuid.UUID, float]], Writer]
) -> tuple[float, float, float]:
    """Chained writes/s until the last is linked, write p99, and commit-to-link lag p99 (seconds)."""
    committed: dict[uuid.UUID, float] = {}
    linked: dict[uuid.UUID, float] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch_links(engine, linked, stop))
    try:
        rate, p99 = await _rate(writers, make(engine, committed), drain=engine)
    finally:
        stop.set()
        await watcher
    return rate, p99, _commit_to_link_p99(committed, linked)


async def _measure(url: str) -> tuple[list[Row], Consent]:
    settings = _settings(url)
    keyring = ChainKeyring(1, {1: CHAIN_KEY})
    engine = create_async_engine(
        url, pool_size=max(WRITERS) + 4, max_overflow=0, execution_options={CHAIN_OPTION: keyring}
    )
    try:
        await upgrade_store(engine)
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE audit_event_plain (LIKE audit_event INCLUDING ALL)"))
        sequencer = asyncio.create_task(run_sequencer(settings, engine))
        seqs = [0]
        rows = []
        linked = 0
        for writers in WRITERS:
            plain, plain_p99 = await _rate(writers, _plain(engine, seqs))
            before = _lag_buckets()
            chained, chained_p99, lag = await _chained_rate(engine, writers, _chained)
            linked += TOTAL // writers * writers
            rows.append((writers, chained, chained_p99, plain, plain_p99, lag, _lag_p99(before)))
        before = _lag_buckets()
        consent_rate, consent_p99, consent_lag = await _chained_rate(engine, CONSENT_WRITERS, _consent)
        consent = (consent_rate, consent_p99, consent_lag, _lag_p99(before))
        linked += TOTAL // CONSENT_WRITERS * CONSENT_WRITERS
        sequencer.cancel()
        await asyncio.gather(sequencer, return_exceptions=True)
        async with AsyncSession(engine) as session:
            report = await verify_chain(session)
        assert report.ok, report
        assert (report.head_seq, report.pending) == (linked, 0), report
        return rows, consent
    finally:
        await engine.dispose()


async def _main() -> tuple[list[Row], Consent]:
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
    load_before = os.getloadavg()[0]
    rows, (consent_rate, consent_p99, consent_lag, consent_bucket) = asyncio.run(_main())
    lines = [
        "## Audit log: chained appends vs plain INSERT+COMMIT (PostgreSQL)",
        "",
        f"`LETHE_BENCH_POSTGRES_URL=... python -m bench audit_append` — {TOTAL} writes per "
        "configuration, each its own transaction through an `AsyncSession` on one pooled engine "
        "(asyncpg), both sides in the same run. Plain = INSERT of the same row shape into a "
        "trigger-less copy of `audit_event` + COMMIT. Chained = `append()` (payload rules, INSERT "
        "into `audit_pending`) + COMMIT while the production sequencer (`run_sequencer`, batches of "
        "1,000, one commit each, keyed HMAC links) runs in the same process; the timed region ends "
        "when the last event is linked, so chained/s counts durable chained events. Lag = from the "
        "writer's commit to the event being visible in the chain to a reader polling every 25 ms; "
        "the exported histogram `lethe_audit_sequencing_lag_seconds` (append to link, so it also "
        "holds the writer's own commit) is given as the bucket its p99 falls in. The chain is "
        "verified at the end (every event linked, no gap). "
        f"Load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on "
        f"{os.cpu_count()} CPUs shared with other jobs.",
        "",
        "| writers | chained appends/s | plain INSERTs/s | chained / plain | chained write p99 ms "
        "| plain write p99 ms | lag p99 ms | histogram p99 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {w} | {c:,.0f} | {p:,.0f} | {c / p:.2f} | {cp * 1000:.1f} | {pp * 1000:.1f} | "
        f"{lag * 1000:.0f} | <= {bucket:g} s |"
        for w, c, cp, p, pp, lag, bucket in rows
    ]
    lines += [
        "",
        f"Consent writes (`record_consent`: consent row + audit event, one transaction) at "
        f"{CONSENT_WRITERS} writers: {consent_rate:,.0f}/s linked, write p99 {consent_p99 * 1000:.1f} ms, "
        f"commit-to-link lag p99 {consent_lag * 1000:.0f} ms (histogram p99 <= {consent_bucket:g} s).",
    ]
    return "\n".join(lines) + "\n"
