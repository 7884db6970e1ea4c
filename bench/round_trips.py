"""Store statements and transactions per request on the hot paths (PostgreSQL store).

``LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench round_trips``

A fresh PostgreSQL store and CRM target (the test suite's manifest, 50 people), the app served
in-process, no webhook subscription, rate limits off. SQLAlchemy's engine events count, per
operation, on the store engine only: statements sent (``before_cursor_execute``), transactions
opened (``begin`` on a connection that is not in autocommit: each costs a ``BEGIN`` round trip)
and commits sent. Operations:
``POST /v1/requests`` (an access request with its own Idempotency-Key), ``GET /v1/requests/{id}``,
and one access request carried out by a request worker (claim, run, completion; the export goes
to the filesystem store; the target's own statements are not counted). Each figure is the mean
over :data:`SAMPLES` operations, so it is exact, not timed: on a 2-core machine shared with
other work, round trips are what a change to the hot path can be judged by between runs; the
``api`` and ``workers`` benchmarks give the rates.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.domain.requests.jobs import RequestWorker, drain
from app.engine.targets import TargetRegistry
from bench.export import _admin_url
from bench.workers import PEOPLE, crm_bench
from tests.integration.requests_support import register_crm

__all__ = ("run",)

SAMPLES = 20


def _sent(connection: Any) -> bool:
    """The connection runs transactions (autocommit sends no BEGIN and no COMMIT)."""
    return bool(connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT")


@asynccontextmanager
async def _counting(engine: AsyncEngine) -> AsyncIterator[Counter[str]]:
    """Count statements, transactions (BEGIN sent) and commits sent on ``engine`` while inside."""
    counts: Counter[str] = Counter()

    def statement(*_: Any) -> None:
        counts["statements"] += 1

    def begin(connection: Any) -> None:
        counts["transactions"] += _sent(connection)

    def commit(connection: Any) -> None:
        counts["commits"] += _sent(connection)

    hooks = (("before_cursor_execute", statement), ("begin", begin), ("commit", commit))
    for name, hook in hooks:
        event.listen(engine.sync_engine, name, hook)
    try:
        yield counts
    finally:
        for name, hook in hooks:
            event.remove(engine.sync_engine, name, hook)


async def _per_operation(
    engine: AsyncEngine, operation: Callable[[int], Awaitable[None]]
) -> dict[str, float]:
    async with _counting(engine) as counts:
        for index in range(SAMPLES):
            await operation(index)
    return {key: counts[key] / SAMPLES for key in ("statements", "transactions", "commits")}


async def _measure(admin_url: str) -> dict[str, dict[str, float]]:
    async with crm_bench(admin_url, "round_trips") as bench:
        headers = bench.headers
        created: list[str] = []
        app = create_app(bench.settings)
        served: AsyncEngine = app.state["store_engine"]
        async with AsyncTestClient(app=app) as client:
            await register_crm(client, headers)

            async def post(index: int) -> None:
                body = {"kind": "access", "identities": {"user_id": str(index % PEOPLE + 1)}}
                keyed = {**headers, "Idempotency-Key": uuid.uuid4().hex}
                response = await client.post("/v1/requests", json=body, headers=keyed)
                assert response.status_code == 202, response.text
                created.append(response.json()["id"])

            async def get(index: int) -> None:
                response = await client.get(f"/v1/requests/{created[index + 1]}", headers=headers)
                assert response.status_code == 200, response.text

            await post(0)  # warm: manifests, pools
            figures = {"POST /v1/requests": await _per_operation(served, post)}
            figures["GET /v1/requests/{id}"] = await _per_operation(served, get)
        targets = TargetRegistry(bench.settings)
        try:
            worker = RequestWorker(bench.settings, bench.store, targets, "round-trips")
            async with _counting(bench.store) as counts:
                await drain([worker])
        finally:
            await targets.dispose()
        figures["worker: one access request"] = {
            key: counts[key] / len(created) for key in ("statements", "transactions", "commits")
        }
    return figures


def run() -> str:
    """Measure and return the Markdown section for RESULTS.md."""
    figures = asyncio.run(_measure(_admin_url()))
    lines = [
        "## Store round trips per request on the hot paths (PostgreSQL store)",
        "",
        "`LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres "
        "python -m bench round_trips` "
        f"— counted with SQLAlchemy engine events over {SAMPLES} operations each (exact, not timed): "
        "statements sent to the service store, transactions opened (each a `BEGIN` round trip; reads "
        "in autocommit open none) and commits. No webhook subscription, rate limits off; the worker "
        "row is one access request carried out by a request worker (claim, run, completion), the "
        "target database's own statements not counted.",
        "",
        "| operation | statements | transactions | commits |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {name} | {f['statements']:.2f} | {f['transactions']:.2f} | {f['commits']:.2f} |"
        for name, f in figures.items()
    ]
    return "\n".join(lines)
