"""Webhooks: the outbox's cost on request creation, and delivery throughput (PostgreSQL store).

Creation: ``app.domain.requests.services.create_request`` in its own transaction per request (what
``POST /v1/requests`` runs, without HTTP), with no subscription and with subscriptions to
``request.received``, interleaved rounds in the same run. Delivery: the events those requests wrote,
sent by Lethe's delivery workers (lease, destination check, Standard Webhooks signature, POST,
fenced outcome write) to a receiver on loopback, against a plain loop POSTing the same bodies with
httpx (no outbox, no signature, no bookkeeping).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import msgspec
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.config import Settings, load_settings
from app.db.store import create_store_engine, upgrade_store
from app.db.webhooks import WebhookDelivery, WebhookEvent
from app.domain.examples import MANIFEST_JSON
from app.domain.manifests.services import ManifestService
from app.domain.requests.schemas import RequestIn
from app.domain.requests.services import create_request
from app.domain.webhooks.delivery import DeliveryWorker
from app.domain.webhooks.schemas import SubscriptionIn
from app.domain.webhooks.services import create_subscription
from app.lib.auth import Principal
from app.manifest.loading import load_manifest

__all__ = ("run",)

ADMIN_URL = os.environ.get("LETHE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUESTS = int(os.environ.get("LETHE_BENCH_WEBHOOK_REQUESTS", "300"))
ROUNDS = 3
SUBSCRIBERS = (0, 1, 4)
SENDERS = (1, 4)
BATCHES = (1, 16)
"""``LETHE_WEBHOOK_BATCH_SIZE`` values compared: 1 is one delivery per claim and outcome transaction."""
CALLER = Principal(sub="bench", client_id="bench", scopes=frozenset({"requests:write", "webhooks:write"}))


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # batched senders connect many at once: no refused connections
    daemon_threads = True


def _async(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql+asyncpg")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def _settings(url: str) -> Settings:
    return load_settings(
        {
            "LETHE_DATABASE_URL": url,
            "LETHE_JWT_SECRET": "bench-jwt-secret-that-is-at-least-32-bytes",
            "LETHE_AUDIT_KEY": "bench-audit-key-that-is-at-least-32-bytes",
            "LETHE_AUDIT_CHAIN_KEY": "bench-audit-chain-key-at-least-32-bytes!",
            "LETHE_ARTIFACT_KEY": "dGVzdC1hcnRpZmFjdC1rZXktdGhhdC1pcy0zMi1ieXQ=",
            "LETHE_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "LETHE_LOG_LEVEL": "ERROR",
        }
    )


async def _create(sessions: async_sessionmaker[AsyncSession], settings: Settings, count: int) -> float:
    body = RequestIn(kind="access", identities={"email": "ada@example.com"})
    started = time.perf_counter()
    for _ in range(count):
        async with sessions() as session, session.begin():
            await create_request(session, settings, CALLER, body)
    return count / (time.perf_counter() - started)


async def _subscribe(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, url: str, n: int
) -> None:
    async with sessions() as session, session.begin():
        for _ in range(n):
            await create_subscription(
                session, settings, CALLER, SubscriptionIn(url=url, events=["request.received"])
            )


async def _set_active(engine: AsyncEngine, *, active: bool) -> None:
    """Switch every subscription off (a configuration's rounds) or on again (to deliver)."""
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE webhook_subscription SET active = :active"), {"active": active})


async def _deliver(settings: Settings, engine: AsyncEngine, senders: int, batch: int) -> tuple[int, float]:
    settings = msgspec.structs.replace(settings, webhook_batch_size=batch)
    workers = [DeliveryWorker(settings, engine, f"bench{i}") for i in range(senders)]

    async def drain(worker: DeliveryWorker) -> int:
        sent = 0
        while attempted := await worker.run_batch():
            sent += attempted
        return sent

    started = time.perf_counter()
    try:
        sent = sum(await asyncio.gather(*(drain(w) for w in workers)))
    finally:
        for worker in workers:
            await worker.close()
    return sent, sent / (time.perf_counter() - started)


async def _plain_posts(engine: AsyncEngine, url: str, senders: int) -> float:
    async with engine.connect() as connection:
        bodies = [
            json.dumps(p).encode() for p in (await connection.execute(select(WebhookEvent.payload))).scalars()
        ]
    queue = list(bodies)
    async with httpx.AsyncClient(trust_env=False) as client:

        async def post_all() -> None:
            while queue:
                await client.post(url, content=queue.pop(), headers={"content-type": "application/json"})

        started = time.perf_counter()
        await asyncio.gather(*(post_all() for _ in range(senders)))
        return len(bodies) / (time.perf_counter() - started)


async def _reset_deliveries(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE webhook_delivery SET status = 'pending', next_attempt_at = now(), attempts = 0")
        )


async def _measure(url: str, receiver_url: str) -> dict[str, object]:
    settings = _settings(url)
    engine = create_store_engine(settings)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        await upgrade_store(engine)
        async with sessions() as session, session.begin():
            await ManifestService(session=session).store(
                load_manifest(json.dumps(MANIFEST_JSON), "json"), "bench"
            )
        creation: dict[int, list[float]] = {n: [] for n in SUBSCRIBERS}
        per_round = REQUESTS // ROUNDS
        for _ in range(ROUNDS):
            for subscribers in SUBSCRIBERS:
                await _set_active(engine, active=False)
                await _subscribe(sessions, settings, receiver_url, subscribers)
                creation[subscribers].append(await _create(sessions, settings, per_round))
        await _set_active(engine, active=True)
        async with engine.connect() as connection:
            pending = (
                await connection.execute(select(func.count()).select_from(WebhookDelivery))
            ).scalar_one()
        delivery: dict[tuple[int, int], tuple[float, float]] = {}
        for senders in SENDERS:
            for batch in BATCHES:  # same run, same deliveries: one at a time, then batched
                await _reset_deliveries(engine)
                sent, lethe = await _deliver(settings, engine, senders, batch)
                assert sent == pending, (sent, pending)  # no retry, no duplicate
                delivery[senders, batch] = (lethe, await _plain_posts(engine, receiver_url, senders))
        return {"creation": creation, "delivery": delivery, "pending": pending}
    finally:
        await engine.dispose()


async def _main(receiver_url: str) -> dict[str, object]:
    name = f"lethe_bench_webhooks_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(_async(ADMIN_URL), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            return await _measure(_async(ADMIN_URL, name), receiver_url)
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def run() -> str:
    """Measure and return the Markdown section for RESULTS.md."""
    server = _Server(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = asyncio.run(_main(f"http://127.0.0.1:{server.server_address[1]}/hooks"))
    finally:
        server.shutdown()
        server.server_close()
    creation: dict[int, list[float]] = result["creation"]  # type: ignore[assignment]
    delivery: dict[tuple[int, int], tuple[float, float]] = result["delivery"]  # type: ignore[assignment]
    base = sorted(creation[0])[len(creation[0]) // 2]
    lines = [
        "## Webhooks: outbox cost on request creation, delivery throughput (PostgreSQL)",
        "",
        "`LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench webhooks` — "
        f"{REQUESTS} access requests per configuration created with `create_request` (validation, "
        "encrypted identities, audit events, the outbox), "
        "one transaction each, in "
        f"{ROUNDS} interleaved rounds per configuration (median shown); then the "
        f"{result['pending']} deliveries those requests wrote, sent to a receiver on loopback (204) by "
        "Lethe's delivery workers (lease, destination check, signature, POST, fenced outcome write) "
        f"with `LETHE_WEBHOOK_BATCH_SIZE` {' and '.join(map(str, BATCHES))} (deliveries leased in one "
        "transaction, posted concurrently, outcomes written in one transaction), each against a plain "
        "httpx loop POSTing the same bodies right after it. Timed region: the first claim to the last "
        "outcome written (Lethe), the first POST to the last answer (plain). "
        f"Load average at the end of the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.",
        "",
        "| subscriptions to `request.received` | requests created/s | vs none |",
        "| ---: | ---: | ---: |",
    ]
    for n in SUBSCRIBERS:
        median = sorted(creation[n])[len(creation[n]) // 2]
        lines.append(f"| {n} | {median:,.1f} | {median / base:.2f} |")
    lines += [
        "",
        "| senders | batch | Lethe deliveries/s | plain POSTs/s | Lethe / plain | vs batch 1 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {s} | {b} | {lethe:,.0f} | {plain:,.0f} | {lethe / plain:.2f} | "
        f"{lethe / delivery[s, BATCHES[0]][0]:.2f} |"
        for (s, b), (lethe, plain) in delivery.items()
    ]
    extra = {n: 1000 / (sorted(creation[n])[len(creation[n]) // 2]) - 1000 / base for n in SUBSCRIBERS}
    lines += [
        "",
        "Without a subscription the outbox costs one SELECT of matching subscriptions per event; a "
        "subscription adds an event row (its `seq` returned) and one delivery row per subscriber: "
        + ", ".join(f"{extra[n]:+.2f} ms per request with {n}" for n in SUBSCRIBERS if n)
        + " (the difference of the medians, one transaction each). With batch 1 a "
        "delivery costs two store transactions (the leased claim, the fenced outcome) besides the "
        "POST; a batch shares them and overlaps its POSTs. The plain loop has no store work at all, so "
        "the ratio is the price of at-least-once bookkeeping.",
    ]
    return "\n".join(lines) + "\n"
