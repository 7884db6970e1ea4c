"""The request hot path over HTTP: POST /v1/requests and GET /v1/requests/{id} (PostgreSQL store).

``LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench api``

A fresh, migrated PostgreSQL store and a small SQLite CRM target (the test suite's manifest,
registered through the API). ``lethe run`` serves the app with uvicorn on loopback in its own
process (one process, workers off), once with the settings of a deployment and once without rate
limits and access logs (:data:`SETUPS`). For 16 and 64 concurrent clients,
``LETHE_BENCH_API_REQUESTS`` (default 2,000) access requests are created, each with its own
Idempotency-Key, then each of them is read back once.

The load comes from :data:`LOAD_PROCESSES` separate processes, each holding its share of the
clients as keep-alive aiohttp connections: an httpx client per connection in the bench process
spent about as much CPU per request as the server, on the same two cores, and so measured the
client as much as the server.

``LETHE_BENCH_PROFILE=DIR`` records the server with py-spy during each measured case (one
collapsed-stack file per case in DIR, for flame graphs); the figures of such a run are not
comparable with an unprofiled one.

Timed: the HTTP round trips from the first request sent to the last response received, over all
load processes (client and server on the same machine, sharing its cores). Server CPU: user +
system time of the server process over the timed region (``/proc``), divided by the requests.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import msgspec
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import load_settings
from app.db.store import create_store_engine, upgrade_store
from app.lib.auth import ALL_SCOPES, mint_token
from bench.export import _admin_url
from bench.workers import _env
from tests.integration.requests_support import create_crm, crm_manifest

__all__ = ("run",)

REQUESTS = int(os.environ.get("LETHE_BENCH_API_REQUESTS", "2000"))
CLIENTS = (16, 64)
PEOPLE = 50
ROOT = Path(__file__).parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
LOAD_PROCESSES = 2
PROFILE = os.environ.get("LETHE_BENCH_PROFILE", "")
SETUPS: dict[str, dict[str, str]] = {
    "production": {"LETHE_RATE_LIMITS": "requests:write=1000000/60", "LETHE_LOG_LEVEL": "INFO"},
    "lean": {"LETHE_RATE_LIMITS": "", "LETHE_LOG_LEVEL": "ERROR"},
}
"""Server settings measured: as deployed (every POST counted against its client's rate limit in
the store, one access log line per request; the limit raised so that none is refused), and
without both."""


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """``lethe run`` on loopback at ``port``, in its own process (its logs to /dev/null)."""
    return subprocess.Popen(
        [sys.executable, "-m", "app", "run", "--port", str(port)],
        env={**os.environ, **env},
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )


async def _ready(base: str, server: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(300):
            if server.poll() is not None:
                raise SystemExit(f"the server exited with {server.returncode}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the server did not become ready")


async def _create(session: aiohttp.ClientSession, headers: dict[str, str], index: int) -> str:
    body = msgspec.json.encode({"kind": "access", "identities": {"user_id": str(index % PEOPLE + 1)}})
    keyed = {**headers, "Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"}
    async with session.post("/v1/requests", data=body, headers=keyed) as response:
        text = await response.read()
        assert response.status == 202, text
        return str(msgspec.json.decode(text)["id"])


async def _read(session: aiohttp.ClientSession, headers: dict[str, str], request_id: str) -> None:
    async with session.get(f"/v1/requests/{request_id}", headers=headers) as response:
        text = await response.read()
        assert response.status == 200, text


CALLS: dict[str, Callable[..., Any]] = {"create": _create, "read": _read}


async def _load(
    base: str, headers: dict[str, str], operation: str, clients: int, items: list[Any]
) -> tuple[float, float, list[float], list[Any]]:
    """One load process: ``clients`` keep-alive connections working through ``items``."""
    call = CALLS[operation]
    queue = list(reversed(items))
    latencies: list[float] = []
    results: list[Any] = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, connector=connector, timeout=aiohttp.ClientTimeout(60)) as session:

        async def client_loop() -> None:
            while queue:
                item = queue.pop()
                start = time.monotonic()
                results.append(await call(session, headers, item))
                latencies.append(time.monotonic() - start)

        started = time.monotonic()
        await asyncio.gather(*(client_loop() for _ in range(clients)))
        return started, time.monotonic(), latencies, results


def _load_process(
    base: str, headers: dict[str, str], operation: str, clients: int, items: list[Any]
) -> tuple[float, float, list[float], list[Any]]:
    return asyncio.run(_load(base, headers, operation, clients, items))


def _profile(pid: int, case: str) -> subprocess.Popen[bytes]:
    """py-spy recording process ``pid`` into ``$LETHE_BENCH_PROFILE/api-<case>.txt`` until SIGINT."""
    out = Path(PROFILE) / f"api-{case}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "-o", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _drive(
    pool: ProcessPoolExecutor,
    base: str,
    headers: dict[str, str],
    clients: int,
    pid: int,
    operation: str,
    items: list[Any],
) -> tuple[dict[str, float], list[Any]]:
    """Send ``operation`` for every item from ``clients`` connections over the load processes."""
    loop = asyncio.get_running_loop()
    shares = [items[i::LOAD_PROCESSES] for i in range(LOAD_PROCESSES)]
    profiler = _profile(pid, f"{operation}-{clients}") if PROFILE and len(items) >= REQUESTS else None
    cpu = _cpu_seconds(pid)
    done = await asyncio.gather(
        *(
            loop.run_in_executor(
                pool, _load_process, base, headers, operation, max(1, clients // LOAD_PROCESSES), share
            )
            for share in shares
        )
    )
    cpu = _cpu_seconds(pid) - cpu
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=60)
    elapsed = max(d[1] for d in done) - min(d[0] for d in done)
    latencies = sorted(latency for d in done for latency in d[2])
    results = [result for d in done for result in d[3]]
    figures = {
        "rps": len(items) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "cpu": cpu * 1000 / len(items),
    }
    return figures, results


async def _measure(admin_url: str) -> list[dict[str, Any]]:
    name = f"lethe_bench_api_store_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f"CREATE DATABASE {name}"))
    store_url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    rows: list[dict[str, Any]] = []
    server: subprocess.Popen[bytes] | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            crm_url = f"sqlite+aiosqlite:///{Path(tmp) / 'crm.db'}"
            env = _env(store_url, crm_url, Path(tmp) / "artifacts")
            settings = load_settings(env)
            store = create_store_engine(settings)
            await upgrade_store(store)
            await store.dispose()
            await create_crm(crm_url, people=PEOPLE, orders_per_person=3)
            token = mint_token(settings, sub="bench", scopes=list(ALL_SCOPES))
            headers = {"Authorization": f"Bearer {token}"}
            spawn = multiprocessing.get_context("spawn")
            for setup, overrides in SETUPS.items():
                port = _free_port()
                base = f"http://127.0.0.1:{port}"
                server = _start({**env, **overrides}, port)
                await _ready(base, server)
                async with httpx.AsyncClient(base_url=base) as client:
                    response = await client.post(
                        "/v1/manifests",
                        content=msgspec.json.encode(crm_manifest()),
                        headers={**headers, "Content-Type": "application/json"},
                    )
                    assert response.status_code in (200, 201), response.text
                with ProcessPoolExecutor(LOAD_PROCESSES, mp_context=spawn) as pool:
                    # warm the pools and caches (and start the load processes)
                    await _drive(pool, base, headers, 4, server.pid, "create", list(range(100)))
                    for clients in CLIENTS:
                        posted, ids = await _drive(
                            pool, base, headers, clients, server.pid, "create", list(range(REQUESTS))
                        )
                        got, _ = await _drive(pool, base, headers, clients, server.pid, "read", ids)
                        for operation, figures in (
                            ("POST /v1/requests", posted),
                            ("GET /v1/requests/{id}", got),
                        ):
                            rows.append(
                                {"setup": setup, "operation": operation, "clients": clients, **figures}
                            )
                            print(rows[-1], flush=True)
                server.terminate()
                server.wait(timeout=30)
                server = None
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        await admin.dispose()
    return rows


def run() -> str:
    """Measure and return the Markdown section for RESULTS.md."""
    rows = asyncio.run(_measure(_admin_url()))
    load = os.getloadavg()
    lines = [
        "## API hot path: POST /v1/requests and GET /v1/requests/{id} over HTTP (PostgreSQL store)",
        "",
        "`LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench api` "
        f"— `lethe run` (uvicorn, one process, workers off, PostgreSQL store, a SQLite "
        f"CRM target registered through the API); per case {REQUESTS:,} access requests created (each "
        "with its own Idempotency-Key), then each read back once, over N concurrent keep-alive "
        f"connections spread over {LOAD_PROCESSES} load processes (aiohttp; separate from the bench "
        "process, so the server is measured, not an in-process client competing with it). Timed "
        "region: HTTP round trips from clients on the same machine (load processes, server and "
        "PostgreSQL share the cores), first request sent to last response received. Server CPU: user + "
        "system time of the server process over the timed region, per request.",
        "",
        "",
        "Settings: **production** counts every POST against its client's rate limit in the store "
        "(`requests:write`, one upsert in its own transaction; the limit raised so that none is "
        "refused) and writes one JSON access log line per request (`LETHE_LOG_LEVEL=INFO`, to "
        "/dev/null); **lean** has neither.",
        "",
        "| settings | operation | clients | requests/s | p50 ms | p99 ms | server CPU ms/request |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['setup']} | {r['operation']} | {r['clients']} | {r['rps']:,.0f} | {r['p50']:.1f} | "
        f"{r['p99']:.1f} | {r['cpu']:.2f} |"
        for r in rows
    ]
    lines += [
        "",
        f"Load average at the end of the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        f"(1/5/15 min) on {os.cpu_count()} CPUs, shared with other work on the machine.",
    ]
    return "\n".join(lines)
