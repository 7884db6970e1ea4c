"""Erasure of a large footprint on the path production takes: keyset batches, a cursor per batch.

``LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench erasure_batched``

The data and manifest of :mod:`bench.erasure` (one subject owning N rows in each of four tables,
four other people owning N/10 each, CHECK constraints), at N = 200,000 by default
(``LETHE_BENCH_BATCHED_SIZES``). Above ``LETHE_ERASURE_BATCH_THRESHOLD`` (50,000) rows a worker
erases in keyset batches of ``LETHE_ERASURE_BATCH_SIZE`` (5,000), each batch its own transaction,
then saves the cursor in the store: that is what is timed here, with the settings' defaults, next
to hand-written SQL doing the same batches and the same cursor writes, and to the hand-written
single-transaction statements. Every contender works on connections opened before the timed
region (as a pool holds them); every run starts from freshly loaded data (loading is not timed).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import msgspec
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from app.engine.erasure import ErasureOptions, execute_erasure
from app.manifest.model import Manifest
from bench.erasure import HAND_WRITTEN, MANIFEST, REPEATS, SECRET, SUBJECT, _check_erased, _load
from bench.export import _admin_url

__all__ = ("run",)

SIZES = tuple(int(n) for n in os.environ.get("LETHE_BENCH_BATCHED_SIZES", "200000").split(","))
THRESHOLD = Settings().erasure_batch_threshold
BATCH = Settings().erasure_batch_size
PROGRESS = "CREATE TABLE IF NOT EXISTS bench_progress (id integer PRIMARY KEY, cursor jsonb)"
SAVE = (
    "INSERT INTO bench_progress VALUES (1, $1::jsonb) ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor"
)
DELETED = ("comments", "sessions")
ANONYMIZED = {
    "orders": "shipping_name = 'redacted', shipping_address = 'redacted'",
    "messages": "subject = 'redacted', body = 'redacted'",
}


async def _lethe(dsn: str, manifest: Manifest, store: asyncpg.Connection) -> Callable[[], Awaitable[None]]:
    """The worker's call with the default settings; each saved cursor is one store commit."""
    engine = create_async_engine(make_url(dsn).set(drivername="postgresql+asyncpg"))
    async with engine.connect():  # the pool holds an open connection before the timed region
        pass
    options = ErasureOptions(secret=SECRET, batch_threshold=THRESHOLD, batch_size=BATCH)

    async def save_cursor(cursor: Mapping[str, Any]) -> None:
        await store.execute(SAVE, json.dumps(cursor))

    async def erase() -> None:
        try:
            outcome = await execute_erasure(
                engine, manifest, {"user_id": str(SUBJECT)}, options, save_cursor=save_cursor
            )
            assert outcome.verified, outcome
            assert outcome.batches > 4, outcome
        finally:
            await engine.dispose()

    return erase


async def _hand_batched(dsn: str, store: asyncpg.Connection) -> Callable[[], Awaitable[None]]:
    """The same keyset batches by hand: per batch the upper key, the statement, a commit, the cursor."""
    conn = await asyncpg.connect(dsn)

    async def batches(table: str, statement: str) -> None:
        after = 0
        while True:
            async with conn.transaction():
                upto = await conn.fetchval(
                    f"SELECT max(id) FROM (SELECT id FROM {table} WHERE user_id = $1 AND id > $2 "
                    "ORDER BY id LIMIT $3) batch",
                    SUBJECT,
                    after,
                    BATCH,
                )
                if upto is None:
                    return
                await conn.execute(statement + " AND id > $2 AND id <= $3", SUBJECT, after, upto)
            after = upto
            await store.execute(SAVE, json.dumps({"table": table, "after": after}))

    async def erase() -> None:
        try:
            for table in DELETED:
                await batches(table, f"DELETE FROM {table} WHERE user_id = $1")
            for table, assignments in ANONYMIZED.items():
                await batches(table, f"UPDATE {table} SET {assignments} WHERE user_id = $1")
            async with conn.transaction():
                await conn.execute(HAND_WRITTEN[-1], SUBJECT)
        finally:
            await conn.close()

    return erase


async def _hand_single(dsn: str) -> Callable[[], Awaitable[None]]:
    """The five statements in one transaction (no batches: locks every row until the end)."""
    conn = await asyncpg.connect(dsn)

    async def erase() -> None:
        try:
            async with conn.transaction():
                for statement in HAND_WRITTEN:
                    await conn.execute(statement, SUBJECT)
        finally:
            await conn.close()

    return erase


async def _median(
    dsn: str, size: int, prepare: Callable[[], Awaitable[Callable[[], Awaitable[None]]]]
) -> float:
    times = []
    for _ in range(REPEATS):
        await _load(dsn, size)
        erase = await prepare()  # connections opened here, outside the timed region
        started = time.perf_counter()
        await erase()
        times.append(time.perf_counter() - started)
        await _check_erased(dsn)
    return statistics.median(times)


async def _measure(admin_url: str) -> list[dict[str, Any]]:
    name = f"lethe_bench_erasure_batched_{uuid.uuid4().hex[:8]}"
    admin = make_url(admin_url).set(drivername="postgresql")
    dsn_admin = admin.render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn_admin)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    dsn = admin.set(database=name).render_as_string(hide_password=False)
    manifest = msgspec.convert(MANIFEST, Manifest)
    store = await asyncpg.connect(dsn)
    rows: list[dict[str, Any]] = []
    try:
        await store.execute(PROGRESS)
        for size in SIZES:
            row = {
                "size": size,
                "lethe": await _median(dsn, size, lambda: _lethe(dsn, manifest, store)),
                "batched": await _median(dsn, size, lambda: _hand_batched(dsn, store)),
                "single": await _median(dsn, size, lambda: _hand_single(dsn)),
            }
            rows.append(row)
            print(row, flush=True)
    finally:
        await store.close()
        conn = await asyncpg.connect(dsn_admin)
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()
    return rows


def _section(rows: list[dict[str, Any]]) -> str:
    load = os.getloadavg()
    lines = [
        "## Erasure on the batched path production takes (PostgreSQL)",
        "",
        "`LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench "
        "erasure_batched` — the data of the erasure benchmark above (one subject owning N rows in "
        "each of 4 tables, 2 deleted and 2 anonymized, plus its users row; others own N/10 each). "
        f"Median of {REPEATS} runs, each on freshly loaded data; connections are opened before "
        "the timed region.",
        "",
        "- Lethe: `app.engine.erasure.execute_erasure` with the settings' defaults (above "
        f"{THRESHOLD:,} rows: keyset batches of {BATCH:,}, each its own transaction), what a worker "
        "runs per system: subject resolution, reflection, counts, the outside-reference check, the "
        "scrub of mentions, every batch with its verification, the independent check per table, "
        "and a cursor saved in a store table (one commit) after every batch. Manifest validation "
        "(registration time) is not in it.",
        "- hand-written batched: the same keyset batches written by hand (upper key of the next "
        f"{BATCH:,} rows, the DELETE or UPDATE in that window, commit, the same cursor write), then "
        "the users row; no verification.",
        "- hand-written single: the five set-based statements in one transaction (every row "
        "locked until it commits; what the batches exist to avoid).",
        "",
        "| rows per table | Lethe | hand-written batched | hand-written single | Lethe / batched "
        "| Lethe / single |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['size']:,} | {r['lethe'] * 1000:.0f} ms | {r['batched'] * 1000:.0f} ms | "
        f"{r['single'] * 1000:.0f} ms | {r['lethe'] / r['batched']:.2f}x | {r['lethe'] / r['single']:.2f}x |"
        for r in rows
    ]
    lines += [
        "",
        f"Load average at the end of the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        f"(1/5/15 min) on {os.cpu_count()} CPUs.",
    ]
    return "\n".join(lines)


def run() -> str:
    """Run the benchmark and return its RESULTS.md section."""
    return _section(asyncio.run(_measure(_admin_url())))
