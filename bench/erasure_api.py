"""Erasure end to end through the API next to the engine alone, on the same data in the same run.

``LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench erasure_api``

The data of ``bench.erasure`` (one subject owning N rows in each of ``comments``, ``sessions``
(deleted), ``orders``, ``messages`` (anonymized), its ``users`` row anonymized; four others own
N/10 each) in a PostgreSQL target, a PostgreSQL service store, one Lethe process serving the API
with its request workers (the default single-replica deployment; the manifest registered once
beforehand). Every repetition reloads the rows (TRUNCATE and COPY, the schema stays), then times:

* API: from just before ``POST /v1/requests`` (an erasure of the subject) is sent until the worker's
  completion transaction (the request's ``completed_at``, taken by the worker when it writes the
  completion): the POST (validation, encrypted identities, audit, outbox, commit), the wake-up,
  the claim, the plan and its record, execution and verification, tombstone, progress and the
  completion. Pick-up latency: from the commit of the POST's transaction (an ``after_commit`` hook
  of the session that queued it) to the commit of the worker's claim (``claim_next`` returned).
* engine only: ``plan_erasure`` then ``execute_erasure`` handed that plan, over the worker's
  reflection (a :class:`ReflectionCache` kept across repetitions, as the worker keeps one), on an
  engine whose pool is warm: no API, no service store.

Both use the settings' defaults (below ``LETHE_ERASURE_BATCH_THRESHOLD`` rows: one transaction).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient
from sqlalchemy import event, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session

from app.asgi import create_app
from app.config import Settings, load_settings
from app.db.requests import SubjectRequest
from app.db.store import create_store_engine, upgrade_store
from app.domain.requests import jobs
from app.domain.requests.leases import Claim
from app.domain.requests.leases import claim_next as _claim_next
from app.engine.erasure import ErasureOptions, execute_erasure, plan_erasure
from app.engine.reflection_cache import ReflectionCache
from app.lib.auth import ALL_SCOPES, mint_token
from app.lib.clock import utcnow
from app.manifest.model import Manifest
from bench.erasure import MANIFEST, SUBJECT, _check_erased, _load
from bench.workers import _env, scratch_databases

__all__ = ("run",)

SIZE = int(os.environ.get("LETHE_BENCH_ERASURE_API_ROWS", "20000"))
REPEATS = int(os.environ.get("LETHE_BENCH_ERASURE_API_REPEATS", "7"))
PICKUPS = int(os.environ.get("LETHE_BENCH_ERASURE_API_PICKUPS", "50"))
NOBODY = 10**6  # erasure requests for a subject the target does not hold: quick, pick-up only
TARGET_VARIABLE = "LETHE_TARGET_BENCH_URL"
_QUEUED_KEY = "lethe.wake.workers"  # the CommitSignal mark of a session that queued a request

_commits: list[datetime] = []
_claims: list[datetime] = []


def _record_commit(session: Session) -> None:
    if session.info.get(_QUEUED_KEY):
        _commits.append(utcnow())


async def _timed_claim(*args: Any, **kwargs: Any) -> Claim | None:
    """The workers' claim, noting when a claim's transaction has committed."""
    claim = await _claim_next(*args, **kwargs)
    if claim is not None:
        _claims.append(utcnow())
    return claim


def _manifest_document() -> dict[str, Any]:
    return {**MANIFEST, "connection": {"env": TARGET_VARIABLE}}


def _settings(store_url: str, target_url: str, artifacts: Path) -> Settings:
    return load_settings({**_env(store_url, target_url, artifacts), "LETHE_WORKERS_ENABLED": "true"})


async def _engine_only(
    engine: AsyncEngine, manifest: Manifest, settings: Settings, cache: ReflectionCache
) -> float:
    options = ErasureOptions(
        secret=settings.audit_key,
        batch_threshold=settings.erasure_batch_threshold,
        batch_size=settings.erasure_batch_size,
    )
    identities = {"user_id": str(SUBJECT)}
    start = time.perf_counter()
    async with engine.connect() as conn:
        reflection = await cache.reflection(conn, manifest.system, 1)
        plan = await plan_erasure(conn, manifest, identities, options, reflection=reflection)
    outcome = await execute_erasure(engine, manifest, identities, options, reflection=reflection, plan=plan)
    seconds = time.perf_counter() - start
    assert outcome.verified, outcome
    return seconds


async def _through_api(
    client: AsyncTestClient[Any], headers: dict[str, str], store: AsyncEngine, subject: int = SUBJECT
) -> tuple[float, float]:
    """Seconds from sending the POST to the completion; seconds from its commit to the claim."""
    _commits.clear()
    _claims.clear()
    body = {"kind": "erasure", "identities": {"user_id": str(subject)}}
    sent = utcnow()
    response = await client.post("/v1/requests", json=body, headers=headers)
    assert response.status_code == 202, response.text
    request_id = uuid.UUID(response.json()["id"])
    while True:
        async with store.connect() as conn:
            row = (
                await conn.execute(
                    select(SubjectRequest.status, SubjectRequest.completed_at).where(
                        SubjectRequest.id == request_id
                    )
                )
            ).one()
        if row.status in ("completed", "failed"):
            break
        await asyncio.sleep(0.02)
    assert row.status == "completed", row.status
    assert len(_commits) == 1, _commits
    assert len(_claims) == 1, _claims
    return (row.completed_at - sent).total_seconds(), (_claims[0] - _commits[0]).total_seconds()


async def _measure(admin_url: str) -> dict[str, Any]:
    async with scratch_databases(admin_url, "eapi_store", "eapi_target") as urls:
        return await _measure_in(*urls)


async def _measure_in(store_url: str, target_url: str) -> dict[str, Any]:
    dsn = make_url(target_url).set(drivername="postgresql").render_as_string(hide_password=False)
    os.environ[TARGET_VARIABLE] = target_url
    manifest = msgspec.convert(_manifest_document(), Manifest)
    event.listen(Session, "after_commit", _record_commit, insert=True)
    jobs.claim_next = _timed_claim
    result: dict[str, Any] = {"api": [], "engine": [], "pickup": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = _settings(store_url, target_url, Path(tmp) / "artifacts")
            store = create_store_engine(settings)
            await upgrade_store(store)
            await _load(dsn, SIZE)
            target = create_async_engine(target_url)
            cache = ReflectionCache()
            headers = {
                "Authorization": f"Bearer {mint_token(settings, sub='bench', scopes=list(ALL_SCOPES))}"
            }
            try:
                async with AsyncTestClient(app=create_app(settings)) as client:
                    registered = await client.post(
                        "/v1/manifests", json=_manifest_document(), headers=headers
                    )
                    assert registered.status_code == 201, registered.text
                    for index in range(REPEATS + 1):  # the first round warms pools and caches
                        await _load(dsn, SIZE, keep_schema=True)
                        engine_seconds = await _engine_only(target, manifest, settings, cache)
                        await _check_erased(dsn)
                        await _load(dsn, SIZE, keep_schema=True)
                        api_seconds, pickup = await _through_api(client, headers, store)
                        await _check_erased(dsn)
                        if index:
                            result["api"].append(api_seconds)
                            result["engine"].append(engine_seconds)
                            result["pickup"].append(pickup)
                            print(
                                f"api {api_seconds * 1000:.0f} ms, engine {engine_seconds * 1000:.0f} ms, "
                                f"pick-up {pickup * 1000:.1f} ms",
                                flush=True,
                            )
                    for _ in range(PICKUPS):  # an idle worker woken by one small request at a time
                        result["pickup"].append((await _through_api(client, headers, store, NOBODY))[1])
            finally:
                await target.dispose()
                await store.dispose()
    finally:
        event.remove(Session, "after_commit", _record_commit)
        jobs.claim_next = _claim_next
    return result


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run() -> str:
    """Measure and return the Markdown section for RESULTS.md."""
    admin_url = os.environ.get("LETHE_BENCH_POSTGRES_URL")
    if not admin_url:
        raise SystemExit("set LETHE_BENCH_POSTGRES_URL=postgresql://user@host:5432/postgres")
    admin_url = make_url(admin_url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    start_load = os.getloadavg()[0]
    result = asyncio.run(_measure(admin_url))
    api, engine = statistics.median(result["api"]), statistics.median(result["engine"])
    pickup = result["pickup"]
    load = os.getloadavg()
    return "\n".join(
        [
            f"## Erasure through the API vs the engine alone, {SIZE:,} rows per table (PostgreSQL)",
            "",
            "`LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench "
            "erasure_api` — the data of the erasure benchmark above (one subject owning N rows in each of "
            "4 tables, 2 deleted and 2 anonymized, plus its users row; four others own N/10 each), a "
            "PostgreSQL target and a PostgreSQL store, one Lethe process serving the API with its "
            f"request workers (defaults). Median of {REPEATS} repetitions after a warm-up, the two "
            "sides alternating, each on freshly reloaded rows (TRUNCATE and COPY, not timed).",
            "",
            "- Timed region, API: from just before `POST /v1/requests` (erasure) is sent until the "
            "worker's completion transaction (`completed_at`): the POST and its commit, the wake-up, "
            "the claim, the plan and its record, execution and verification, the tombstone, progress "
            "and completion writes.",
            "- Timed region, engine only: `plan_erasure` and `execute_erasure` handed that plan over the "
            "reflection the worker would use (a warm reflection cache: one catalog fingerprint "
            "query), on a warm engine; no API, no service store.",
            "- Pick-up latency: from the commit of the POST's transaction (an `after_commit` hook on "
            "the session that queued the request) to the commit of the worker's claim (`claim_next` "
            "returned: the request is the worker's, its `request.running` event written).",
            "",
            "| rows per table | through the API | engine only | API / engine | pick-up p50 | pick-up p99 |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {SIZE:,} | {api * 1000:.0f} ms | {engine * 1000:.0f} ms | {api / engine:.2f}x | "
            f"{_percentile(pickup, 0.5) * 1000:.1f} ms | {_percentile(pickup, 0.99) * 1000:.1f} ms |",
            "",
            f"Pick-up latency over {len(pickup)} requests: the {REPEATS} erasures above and {PICKUPS} "
            "erasures of a subject the target does not hold, sent one at a time to an idle worker. "
            "Goals: through the API within "
            "1.3x of the engine-only time, pick-up p50 under 50 ms. Load average "
            f"{start_load:.1f} at the start, {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) "
            f"at the end, on {os.cpu_count()} CPUs shared with other jobs.",
        ]
    )
