"""Chained audit appends per second on PostgreSQL, against plain INSERTs of the same row shape.

Each append (chained or plain) is its own transaction, as when a feature records one action.
The chained path takes the advisory lock, reads the head, hashes and inserts; the plain path
inserts a row with a precomputed ``seq`` into a copy of the table without triggers.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import MetaData, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from app.db.audit import AuditEvent
from app.db.store import upgrade_store
from app.domain.audit.services import append, verify_chain

__all__ = ("run",)

ADMIN_URL = os.environ.get(
    "LETHE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TOTAL = int(os.environ.get("LETHE_BENCH_AUDIT_APPENDS", "2000"))
WRITERS = (1, 8)
PLAIN = AuditEvent.__table__.to_metadata(MetaData(), name="audit_event_plain")
"""The columns and types of ``audit_event``; created by ``LIKE ... INCLUDING ALL`` (no triggers)."""


def _async(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql+asyncpg")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _chained(engine: AsyncEngine, writer: int, count: int) -> None:
    for index in range(count):
        async with AsyncSession(engine) as session:
            await append(
                session,
                action="bench.append",
                actor=f"writer-{writer}",
                request_id="bench",
                payload={"table": "users", "rows": index},
            )
            await session.commit()


async def _plain(engine: AsyncEngine, writer: int, count: int, seqs: itertools.count[int]) -> None:
    for index in range(count):
        async with AsyncSession(engine) as session:
            await session.execute(
                insert(PLAIN).values(
                    seq=next(seqs),
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


async def _rate(writers: int, work: object) -> float:
    per_writer = TOTAL // writers
    started = time.perf_counter()
    await asyncio.gather(*(work(n, per_writer) for n in range(writers)))  # type: ignore[operator]
    return per_writer * writers / (time.perf_counter() - started)


async def _measure(url: str) -> list[tuple[int, float, float]]:
    engine = create_async_engine(url, pool_size=max(WRITERS), max_overflow=0)
    try:
        await upgrade_store(engine)
        async with engine.begin() as connection:
            await connection.execute(
                text("CREATE TABLE audit_event_plain (LIKE audit_event INCLUDING ALL)")
            )
        seqs = itertools.count(1)
        rows = []
        for writers in WRITERS:
            plain = await _rate(writers, lambda n, c: _plain(engine, n, c, seqs))
            chained = await _rate(writers, lambda n, c: _chained(engine, n, c))
            rows.append((writers, chained, plain))
        async with AsyncSession(engine) as session:
            report = await verify_chain(session)
        assert report.ok, report
        assert report.head_seq == sum(TOTAL // w * w for w in WRITERS), report
        return rows
    finally:
        await engine.dispose()


async def _main() -> list[tuple[int, float, float]]:
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
    rows = asyncio.run(_main())
    lines = [
        "## Audit log: chained appends vs plain INSERTs (PostgreSQL)",
        "",
        f"`LETHE_BENCH_POSTGRES_URL=... python -m bench audit_append` — {TOTAL} appends per "
        "configuration, one transaction each; chained = advisory lock + head read + SHA-256 + "
        "insert (`app.domain.audit.services.append`), plain = INSERT into a trigger-less copy of "
        "the table with a precomputed seq. The chain is verified at the end. "
        f"Load average at the end of the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.",
        "",
        "| writers | chained appends/s | plain INSERTs/s | chained / plain |",
        "| ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {w} | {c:,.0f} | {p:,.0f} | {c / p:.2f} |" for w, c, p in rows]
    return "\n".join(lines) + "\n"
