"""Draining a backlog of access requests with 1, 2 and 4 worker processes (PostgreSQL store).

``LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench workers``

A fresh PostgreSQL store and a CRM target (the test suite's manifest: users, orders, order items
two hops away, teams through a join table; 50 people). For each worker count, 2,000 access
requests are created through the API (workers off, rate limits off), then that many
``lethe worker --once`` processes are started at once; each claims requests (``FOR UPDATE SKIP
LOCKED``) with the default ``LETHE_WORKER_CONCURRENCY`` until none is ready, and exits. Exports go
to the filesystem artifact store.

``LETHE_BENCH_WORKER_REQUESTS`` and ``LETHE_BENCH_WORKER_PROCESSES`` (``1,2,4``) change the
load; ``LETHE_BENCH_PROFILE=DIR`` records each worker process with py-spy.

Timed: from the first ``request.running`` to the last ``request.completed`` audit event of the
batch (the work itself), and the wall time from starting the processes until the last one exited
(start-up and the final empty poll included). Checked: every request completed, exactly one
``request.completed`` event each, and ``lethe audit verify`` accepts the whole chain at the end.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.asgi import create_app
from app.config import Settings, load_settings
from app.db.audit import AuditEvent
from app.db.requests import SubjectRequest
from app.db.store import create_store_engine, upgrade_store
from app.lib.auth import ALL_SCOPES, mint_token
from bench.export import _admin_url
from tests.integration.requests_support import TARGET_ENV, create_crm, register_crm

__all__ = ("CrmBench", "crm_bench", "run", "scratch_databases")

REQUESTS = int(os.environ.get("LETHE_BENCH_WORKER_REQUESTS", "2000"))
WORKERS = tuple(int(n) for n in os.environ.get("LETHE_BENCH_WORKER_PROCESSES", "1,2,4").split(","))
PROFILE = os.environ.get("LETHE_BENCH_PROFILE", "")
PEOPLE = 50
ROOT = Path(__file__).parents[1]


def _env(store_url: str, target_url: str, artifacts: Path) -> dict[str, str]:
    return {
        "LETHE_DATABASE_URL": store_url,
        "LETHE_JWT_SECRET": "bench-jwt-secret-that-is-at-least-32-bytes",
        "LETHE_AUDIT_KEY": "bench-audit-key-that-is-at-least-32-bytes",
        "LETHE_AUDIT_CHAIN_KEY": "bench-audit-chain-key-that-is-at-least-32-bytes",
        "LETHE_ARTIFACT_KEY": "YmVuY2gtYXJ0aWZhY3Qta2V5LTMyLWJ5dGVzLWxvbmc=",
        "LETHE_ARTIFACTS_DIR": str(artifacts),
        "LETHE_RATE_LIMITS": "",
        "LETHE_WORKERS_ENABLED": "false",
        "LETHE_LOG_LEVEL": "ERROR",
        TARGET_ENV: target_url,
    }


async def _enqueue(client: AsyncTestClient[Any], headers: dict[str, str]) -> list[str]:
    gate = asyncio.Semaphore(16)

    async def one(index: int) -> str:
        body = {"kind": "access", "identities": {"user_id": str(index % PEOPLE + 1)}}
        async with gate:
            response = await client.post("/v1/requests", json=body, headers=headers)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    return list(await asyncio.gather(*(one(i) for i in range(REQUESTS))))


def _profiled(command: list[str], case: str) -> list[str]:
    """``command`` under py-spy when ``LETHE_BENCH_PROFILE`` names a directory (collapsed stacks
    in ``<dir>/<case>.txt``); the figures of such a run are not comparable with an unprofiled one."""
    if not PROFILE:
        return command
    Path(PROFILE).mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).with_name("py-spy"))
    return [spy, "record", "--format", "raw", "--rate", "250", "-o", f"{PROFILE}/{case}.txt", "--", *command]


def _drain(env: dict[str, str], workers: int) -> float:
    """Start ``workers`` processes of ``lethe worker --once``; seconds until the last one exited."""
    full = {**os.environ, **env, "LETHE_WORKERS_ENABLED": "true"}
    command = [sys.executable, "-m", "app", "worker", "--once"]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(_profiled(command, f"workers-{workers}-{index}"), env=full, cwd=ROOT)
        for index in range(workers)
    ]
    for process in processes:
        assert process.wait(timeout=1800) == 0
    return time.perf_counter() - started


async def _check(store: AsyncEngine, ids: list[str]) -> float:
    """Every request completed once; returns the seconds from first claim to last completion."""
    async with store.connect() as connection:
        statuses = dict(
            (
                await connection.execute(
                    select(SubjectRequest.status, func.count())
                    .where(SubjectRequest.id.in_([uuid.UUID(i) for i in ids]))
                    .group_by(SubjectRequest.status)
                )
            ).all()
        )
        assert statuses == {"completed": len(ids)}, statuses
        completions = (
            await connection.execute(
                select(AuditEvent.request_id, func.count())
                .where(AuditEvent.action == "request.completed", AuditEvent.request_id.in_(ids))
                .group_by(AuditEvent.request_id)
            )
        ).all()
        assert len(completions) == len(ids), len(completions)
        assert all(count == 1 for _, count in completions)
        first, last = (
            await connection.execute(
                select(
                    func.min(AuditEvent.occurred_at).filter(AuditEvent.action == "request.running"),
                    func.max(AuditEvent.occurred_at).filter(AuditEvent.action == "request.completed"),
                ).where(AuditEvent.request_id.in_(ids))
            )
        ).one()
    return (last - first).total_seconds()


@asynccontextmanager
async def scratch_databases(admin_url: str, *names: str) -> AsyncIterator[list[str]]:
    """Fresh PostgreSQL databases ``lethe_bench_<name>_<random>`` (their URLs), dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    databases = [f"lethe_bench_{name}_{suffix}" for name in names]
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        for database in databases:
            await connection.execute(text(f"CREATE DATABASE {database}"))
    url = make_url(admin_url)
    try:
        yield [url.set(database=d).render_as_string(hide_password=False) for d in databases]
    finally:
        async with admin.connect() as connection:
            for database in databases:
                await connection.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        await admin.dispose()


@dataclass(frozen=True)
class CrmBench:
    """A migrated scratch store and a CRM target, the settings naming them, an all-scopes token."""

    env: dict[str, str]
    settings: Settings
    store: AsyncEngine
    headers: dict[str, str]


@asynccontextmanager
async def crm_bench(admin_url: str, name: str) -> AsyncIterator[CrmBench]:
    """Fresh PostgreSQL store (migrated) and CRM target (:data:`PEOPLE` people, three orders
    each), exports into a temporary directory; everything dropped afterwards."""
    async with scratch_databases(admin_url, f"{name}_store", f"{name}_crm") as (store_url, crm_url):
        with tempfile.TemporaryDirectory() as tmp:
            env = _env(store_url, crm_url, Path(tmp) / "artifacts")
            os.environ[TARGET_ENV] = crm_url
            settings = load_settings(env)
            store = create_store_engine(settings)
            try:
                await upgrade_store(store)
                await create_crm(crm_url, people=PEOPLE, orders_per_person=3)
                token = mint_token(settings, sub="bench", scopes=list(ALL_SCOPES))
                yield CrmBench(env, settings, store, {"Authorization": f"Bearer {token}"})
            finally:
                await store.dispose()


async def _measure(admin_url: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with crm_bench(admin_url, "workers") as bench:
        async with AsyncTestClient(app=create_app(bench.settings)) as client:
            await register_crm(client, bench.headers)
            for workers in WORKERS:
                ids = await _enqueue(client, bench.headers)
                wall = await asyncio.to_thread(_drain, bench.env, workers)
                span = await _check(bench.store, ids)
                rows.append({"workers": workers, "span": span, "wall": wall})
                print(rows[-1], flush=True)
        verified = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "app", "audit", "verify"],
            env={**os.environ, **bench.env},
            cwd=ROOT,
            check=False,
            capture_output=True,
            text=True,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
    return rows


def run() -> str:
    """Measure and return the Markdown section for RESULTS.md."""
    rows = asyncio.run(_measure(_admin_url()))
    load = os.getloadavg()
    base = rows[0]["span"]
    lines = [
        f"## Workers: {REQUESTS:,} access requests drained by 1, 2 and 4 processes (PostgreSQL)",
        "",
        "`LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench workers` "
        f"— {REQUESTS:,} access requests queued through the API, then drained by N `lethe worker --once` "
        "processes (default `LETHE_WORKER_CONCURRENCY`, PostgreSQL store, a PostgreSQL CRM target with "
        f"{PEOPLE} people, exports to the filesystem store). Timed region: first `request.running` to "
        "last `request.completed` audit event (requests/s from it); wall = starting the processes until "
        "the last exited. Checked: every request completed, exactly one `request.completed` each, "
        "`lethe audit verify` accepts the chain at the end.",
        "",
        "| worker processes | requests/s | seconds (first claim to last completion) | wall s | speed-up |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['workers']} | {REQUESTS / r['span']:.1f} | {r['span']:.1f} | {r['wall']:.1f} | "
        f"{base / r['span']:.2f}x |"
        for r in rows
    ]
    lines += [
        "",
        f"Load average at the end of the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        f"(1/5/15 min) on {os.cpu_count()} CPUs: with 2 cores, more than 2 processes share them with "
        "PostgreSQL and each other.",
    ]
    return "\n".join(lines)
