"""Access export vs hand-written SELECTs + JSON encoding of the same rows, and export peak memory.

``LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench.export``

One subject owns N rows in each of four tables (``orders``, ``order_items`` two hops away,
``comments``, ``sessions``); other people own as many rows again. Lethe's export engine
(``app.engine.export.run_access``: subject resolution, manifest hop chains, JSON document and ZIP
of CSVs, AES-GCM framed encryption) is timed against hand-written SELECTs of the same rows,
fetched in full and encoded with ``json.dumps``, in the same run. Peak memory (tracemalloc) is
measured in separate runs so it does not slow the timings.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings, load_settings
from app.engine.export import run_access
from app.engine.runs import RequestRun, SystemRun
from app.manifest.loading import load_manifest
from app.manifest.model import Manifest

__all__ = ("main", "run")

SIZES = (2_000, 20_000, 200_000)
REPEATS = 3
SUBJECT_EMAIL = "subject@example.com"
RESULTS = Path(__file__).with_name("RESULTS.md")

SCHEMA = [
    "CREATE TABLE users (id integer PRIMARY KEY, email varchar(120) NOT NULL UNIQUE, "
    "full_name varchar(80) NOT NULL, created_at timestamptz NOT NULL)",
    "CREATE TABLE orders (id integer PRIMARY KEY, user_id integer NOT NULL REFERENCES users(id), "
    "placed_at timestamptz NOT NULL, total_cents integer NOT NULL, note varchar(200))",
    "CREATE TABLE order_items (id integer PRIMARY KEY, order_id integer NOT NULL REFERENCES orders(id), "
    "sku varchar(32) NOT NULL, quantity integer NOT NULL)",
    "CREATE TABLE comments (id integer PRIMARY KEY, user_id integer NOT NULL REFERENCES users(id), "
    "body text NOT NULL, created_at timestamptz NOT NULL)",
    "CREATE TABLE sessions (id integer PRIMARY KEY, user_id integer NOT NULL REFERENCES users(id), "
    "ip_address varchar(45) NOT NULL, user_agent varchar(200), started_at timestamptz NOT NULL)",
    "CREATE INDEX ix_orders_user ON orders(user_id)",
    "CREATE INDEX ix_order_items_order ON order_items(order_id)",
    "CREATE INDEX ix_comments_user ON comments(user_id)",
    "CREATE INDEX ix_sessions_user ON sessions(user_id)",
]

_BY_EMAIL = "JOIN users u ON u.id = {alias}.user_id WHERE u.email = :email ORDER BY {order}"
HAND_WRITTEN = {
    "users": "SELECT * FROM users WHERE email = :email ORDER BY id",
    "orders": "SELECT o.* FROM orders o " + _BY_EMAIL.format(alias="o", order="o.id"),
    "order_items": "SELECT i.* FROM order_items i JOIN orders o ON o.id = i.order_id "
    + _BY_EMAIL.format(alias="o", order="i.id"),
    "comments": "SELECT c.* FROM comments c " + _BY_EMAIL.format(alias="c", order="c.id"),
    "sessions": "SELECT s.* FROM sessions s " + _BY_EMAIL.format(alias="s", order="s.id"),
}

MANIFEST = {
    "system": "bench",
    "connection": {"env": "LETHE_BENCH_TARGET_URL"},
    "subject": {"table": "users", "key": "id", "identities": {"email": "email"}},
    "tables": {
        "users": {
            "purpose": "account",
            "legal_basis": "contract",
            "columns": {"email": {"category": "user.contact.email"}, "full_name": {"category": "user.name"}},
        },
        "orders": {
            "purpose": "invoicing",
            "legal_basis": "legal obligation",
            "strategy": "retain",
            "retention": {"legal_basis": "tax law", "duration": "P10Y"},
            "columns": {"note": {"category": "user.content", "strategy": "delete"}},
        },
        "order_items": {
            "purpose": "invoicing",
            "legal_basis": "legal obligation",
            "strategy": "retain",
            "retention": {"legal_basis": "tax law", "duration": "P10Y"},
        },
        "comments": {
            "purpose": "reviews",
            "legal_basis": "consent",
            "strategy": "delete",
            "columns": {"body": {"category": "user.content"}},
        },
        "sessions": {
            "purpose": "security",
            "legal_basis": "legitimate interest",
            "strategy": "delete",
            "columns": {"ip_address": {"category": "user.device.ip_address"}},
        },
    },
}


def _populate(rows: int) -> list[str]:
    """Subject 1 and person 2 each own ``rows`` rows in every table (generated server-side)."""
    owner = f"1 + (g > {rows})::int"
    series = f"FROM generate_series(1, {2 * rows}) g"
    return [
        "INSERT INTO users VALUES (1, 'subject@example.com', 'Sub Ject', now()), "
        "(2, 'other@example.com', 'Oth Er', now())",
        f"INSERT INTO orders SELECT g, {owner}, now() - g * interval '1 minute', g * 7, "
        f"CASE WHEN g % 3 = 0 THEN NULL ELSE 'leave at the door #' || g END {series}",
        f"INSERT INTO order_items SELECT g, 1 + (g - 1) % {rows} + (g > {rows})::int * {rows}, "
        f"'SKU-' || g, 1 + g % 4 {series}",
        f"INSERT INTO comments SELECT g, {owner}, 'Comment number ' || g || ' about the shop', now() "
        + series,
        f"INSERT INTO sessions SELECT g, {owner}, '192.0.2.' || (g % 250), 'Mozilla/5.0 (X11)', now() "
        + series,
        "ANALYZE",
    ]


class _NoProgress:
    """The bench measures the engine alone: progress writes to the store are no-ops."""

    async def heartbeat(self) -> None:
        return None

    async def save_cursor(self, *_: object, **__: object) -> None:
        return None

    async def complete_system(self, *_: object, **__: object) -> None:
        return None

    async def record_plan(self, *_: object, **__: object) -> None:
        return None


def _settings(artifacts: Path) -> Settings:
    return load_settings(
        {
            "LETHE_JWT_SECRET": "bench-jwt-secret-that-is-at-least-32-bytes",
            "LETHE_AUDIT_KEY": "bench-audit-key-that-is-at-least-32-bytes",
            "LETHE_ARTIFACT_KEY": "YmVuY2gtYXJ0aWZhY3Qta2V5LTMyLWJ5dGVzLWxvbmc=",
            "LETHE_ARTIFACTS_DIR": str(artifacts),
        }
    )


async def _lethe(engine: AsyncEngine, manifest: Manifest, settings: Settings) -> int:
    async def target(system: str, manifest: Manifest) -> AsyncEngine:  # noqa: ARG001
        return engine

    run = RequestRun(
        request_id=uuid.uuid4(),
        kind="access",
        attempt=1,
        started_at=datetime.now(UTC),
        dry_run=False,
        subject_ref="0" * 64,
        identities={"email": SUBJECT_EMAIL},
        tenant=None,
        changes={},
        systems=[SystemRun(system="bench", manifest=manifest, manifest_version=1)],
        consent_history=[],
        settings=settings,
        progress=_NoProgress(),
        targets=target,
    )
    await run_access(run)
    return sum(p.stat().st_size for p in Path(settings.artifacts_dir).glob(f"{run.request_id}.*"))


async def _hand_written(engine: AsyncEngine, out: Path, *, fast: bool = False) -> int:
    """The same rows by hand-written SQL, fetched in full; ``json.dumps`` (or msgspec when ``fast``)."""
    document: dict[str, Any] = {}
    async with engine.connect() as connection:
        for name, sql in HAND_WRITTEN.items():
            result = await connection.execute(text(sql), {"email": SUBJECT_EMAIL})
            document[name] = [dict(row._mapping) for row in result.all()]
    encoded = msgspec.json.encode(document) if fast else json.dumps(document, default=str).encode()
    out.write_bytes(encoded)
    return len(encoded)


async def _best(action: Callable[[], Awaitable[int]]) -> float:
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        await action()
        timings.append(time.perf_counter() - started)
    return min(timings)


async def _peak(action: Callable[[], Awaitable[int]]) -> float:
    tracemalloc.start()
    try:
        await action()
        return tracemalloc.get_traced_memory()[1] / 1_048_576
    finally:
        tracemalloc.stop()


async def _one_size(admin_url: str, rows: int, workdir: Path) -> dict[str, float]:
    name = f"lethe_bench_export_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(admin_url).set(database=name)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in SCHEMA + _populate(rows):
                await connection.execute(text(statement))
        manifest = load_manifest(json.dumps(MANIFEST), "json")
        settings = _settings(workdir / f"artifacts-{rows}")
        await _lethe(engine, manifest, settings)  # warm up: reflection, pool, caches
        lethe_s = await _best(lambda: _lethe(engine, manifest, settings))
        raw_s = await _best(lambda: _hand_written(engine, workdir / "raw.json"))
        fast_s = await _best(lambda: _hand_written(engine, workdir / "raw.json", fast=True))
        return {
            "rows": rows,
            "lethe_s": lethe_s,
            "raw_s": raw_s,
            "fast_s": fast_s,
            "lethe_mib": await _peak(lambda: _lethe(engine, manifest, settings)),
            "raw_mib": await _peak(lambda: _hand_written(engine, workdir / "raw.json")),
        }
    finally:
        await engine.dispose()
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        await admin.dispose()


def _admin_url() -> str:
    raw = os.environ.get("LETHE_BENCH_POSTGRES_URL") or os.environ.get("LETHE_TEST_POSTGRES_URL")
    if not raw:
        raise SystemExit("set LETHE_BENCH_POSTGRES_URL=postgresql://user@host:port/postgres")
    return make_url(raw).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


async def _measure(sizes: tuple[int, ...]) -> list[dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        return [await _one_size(_admin_url(), rows, Path(tmp)) for rows in sizes]


def run(sizes: tuple[int, ...] = SIZES) -> str:
    """Measure and return the Markdown section for RESULTS.md."""
    results = asyncio.run(_measure(sizes))
    lines = [
        "## Access export vs hand-written SELECT + JSON (PostgreSQL)",
        "",
        "`LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench.export` — "
        "one subject owning N rows in each of 4 tables (orders, order_items two hops away, comments, "
        "sessions; 4N + 1 rows in all) plus another person owning as many. Lethe = "
        "`app.engine.export.run_access` (subject lookup, manifest hop chains, streamed JSON document "
        "+ ZIP of CSVs, AES-GCM frames on disk); raw = the same rows by hand-written JOINs, fetched in full, "
        "encoded to one JSON file (no CSV, no encryption) with `json.dumps` (raw) or msgspec (raw fast). "
        "Best of 3; peak memory by tracemalloc in separate runs (raw = json.dumps variant). Absolute times "
        "depend on the machine (shared and noisy here); the ratios come from one run.",
        "",
        "| rows per table | Lethe s | raw s | raw fast s | Lethe / raw | Lethe / raw fast "
        "| Lethe peak MiB | raw peak MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {int(r['rows']):,} | {r['lethe_s']:.3f} | {r['raw_s']:.3f} | {r['fast_s']:.3f} | "
        f"{r['lethe_s'] / r['raw_s']:.2f} | {r['lethe_s'] / r['fast_s']:.2f} | "
        f"{r['lethe_mib']:.1f} | {r['raw_mib']:.1f} |"
        for r in results
    ]
    return "\n".join(lines)


def _update_results(section: str) -> None:
    block = f"<!-- bench:export -->\n{section.strip()}\n<!-- /bench:export -->"
    document = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(r"<!-- bench:export -->.*?<!-- /bench:export -->", re.S)
    document = (
        pattern.sub(lambda _: block, document)
        if pattern.search(document)
        else (f"{document.rstrip()}\n\n{block}\n")
    )
    RESULTS.write_text(document)


def main(argv: list[str]) -> int:
    """``python -m bench.export [N ...]``: measure (default 2,000 / 20,000 / 200,000), update RESULTS.md."""
    sizes = tuple(int(a) for a in argv) or SIZES
    section = run(sizes)
    print(section)
    _update_results(section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
