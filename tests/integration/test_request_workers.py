"""Worker claims, leases and attempt fencing, and the per-kind engine contract erasure plugs into."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.db.audit import AuditEvent, ErasureTombstone
from app.db.requests import SubjectRequest, SubjectRequestSystem
from app.domain.audit.sequencer import sequence_now
from app.domain.manifests.services import ManifestService, register_manifest
from app.domain.requests import jobs
from app.engine.reflection_cache import REFLECTIONS
from app.engine.runs import RequestOutcome, RequestRun, SystemOutcome
from app.engine.targets import TargetRegistry
from app.manifest.external import load_any
from tests.integration.requests_support import (
    SUBJECT_EMAIL,
    TARGET_ENV,
    create_crm,
    crm_manifest,
    register_crm,
)

Headers = Callable[..., dict[str, str]]


async def fake_erasure(run: RequestRun) -> RequestOutcome:
    """Stands in for the erasure engine: one resumable batch, then the system's completion."""
    for system in run.systems:
        if system.status == "completed":
            continue
        await run.progress.save_cursor(system.system, {"table": "users", "after": 1}, {"users": 1})
        outcome = SystemOutcome(
            counts={"users": 1}, audit={"tables": {"users": "anonymize"}}, tombstones=["ab" * 32]
        )
        await run.progress.complete_system(system.system, outcome, action="request.system_erased")
    return RequestOutcome(audit={"systems": len(run.systems)})


@pytest.fixture
async def crm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    await create_crm(url)
    monkeypatch.setenv(TARGET_ENV, url)
    return url


async def _count(store: AsyncEngine, action: str, request_id: uuid.UUID) -> int:
    await sequence_now(store)
    async with store.connect() as connection:
        return int(
            (
                await connection.execute(
                    select(func.count()).where(
                        AuditEvent.action == action, AuditEvent.request_id == str(request_id)
                    )
                )
            ).scalar_one()
        )


async def test_a_worker_whose_lease_was_taken_over_cannot_write(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    crm: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(jobs.HANDLERS, "erasure", fake_erasure)
    await register_crm(client, auth())
    created = await client.post(
        "/v1/requests", json={"kind": "erasure", "identities": {"email": SUBJECT_EMAIL}}, headers=auth()
    )
    request_id = uuid.UUID(created.json()["id"])
    targets = TargetRegistry(settings)
    old = jobs.RequestWorker(settings, store_engine, targets, "old")
    new = jobs.RequestWorker(settings, store_engine, targets, "new")
    try:
        first = await old.claim()
        assert first is not None
        assert first.attempt == 1
        assert await new.claim() is None  # the lease is held
        async with store_engine.begin() as connection:  # the old worker stalls past its lease
            await connection.execute(
                update(SubjectRequest)
                .where(SubjectRequest.id == request_id)
                .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        second = await new.claim()
        assert second is not None
        assert second.attempt == 2
        assert await old.process(first) == "lost"
        async with store_engine.connect() as connection:
            progress = (await connection.execute(select(SubjectRequestSystem))).one()
        assert (progress.status, progress.cursor) == ("pending", None)  # nothing the old one wrote
        assert await new.process(second) == "completed"
    finally:
        await targets.dispose()
    async with store_engine.connect() as connection:
        row = (await connection.execute(select(SubjectRequest).where(SubjectRequest.id == request_id))).one()
        progress = (await connection.execute(select(SubjectRequestSystem))).one()
        tombstones = (await connection.execute(select(ErasureTombstone.subject_key_ref))).scalars().all()
    assert (row.status, row.attempt, row.identities_encrypted) == ("completed", 2, None)
    assert (progress.status, progress.attempt, progress.counts) == ("completed", 2, {"users": 1})
    assert tombstones == ["ab" * 32]
    assert await _count(store_engine, "request.completed", request_id) == 1
    assert await _count(store_engine, "request.system_erased", request_id) == 1
    assert await _count(store_engine, "request.resumed", request_id) == 1


async def test_concurrent_workers_claim_different_requests(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine, crm: str
) -> None:
    await register_crm(client, auth())
    for _ in range(4):
        await client.post(
            "/v1/requests", json={"kind": "access", "identities": {"email": SUBJECT_EMAIL}}, headers=auth()
        )
    targets = TargetRegistry(settings)
    workers = [jobs.RequestWorker(settings, store_engine, targets, f"w{i}") for i in range(4)]
    try:
        claims = await asyncio.gather(*(w.claim() for w in workers))
    finally:
        await targets.dispose()
    taken = [c.request_id for c in claims if c is not None]
    assert len(taken) == len(set(taken))
    if store_engine.dialect.name == "postgresql":
        assert len(taken) == 4  # SKIP LOCKED: nobody waits, nobody loses


async def _deferred_then_expired(store: AsyncEngine, request_id: uuid.UUID) -> None:
    """The request was deferred (still running, no owner, no failure); its lease then runs out."""
    async with store.begin() as connection:
        row = (await connection.execute(select(SubjectRequest).where(SubjectRequest.id == request_id))).one()
        assert (row.status, row.lease_owner, row.failure_reason) == ("running", None, None)
        await connection.execute(
            update(SubjectRequest)
            .where(SubjectRequest.id == request_id)
            .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


async def test_an_unreachable_target_is_retried_then_fails_cleanly(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    crm: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await register_crm(client, auth())
    created = await client.post(
        "/v1/requests", json={"kind": "access", "identities": {"email": SUBJECT_EMAIL}}, headers=auth()
    )
    request_id = uuid.UUID(created.json()["id"])
    monkeypatch.setenv(TARGET_ENV, f"sqlite+aiosqlite:///{tmp_path / 'gone.db'}")
    limited = msgspec.structs.replace(settings, worker_max_attempts=2)
    targets = TargetRegistry(limited)
    worker = jobs.RequestWorker(limited, store_engine, targets, "w")
    try:
        first = await worker.claim()
        assert first is not None
        assert await worker.process(first) == "deferred"
        await _deferred_then_expired(store_engine, request_id)
        second = await worker.claim()
        assert second is not None
        assert await worker.process(second) == "failed"
    finally:
        await targets.dispose()
    body = (await client.get(f"/v1/requests/{request_id}", headers=auth())).json()
    assert body["status"] == "failed"
    assert body["failure_reason"] == (
        "target database of system 'crm' is unavailable: the SQLite database file does not exist"
    )
    assert await _count(store_engine, "request.deferred", request_id) == 1
    assert await _count(store_engine, "request.failed", request_id) == 1


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_a_store_connection_lost_mid_run_defers_the_request_instead_of_failing_it(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine, crm: str
) -> None:
    """A store restart or failover under a running request: the request is resumed by the next
    claim, not failed for good."""
    await register_crm(client, auth())
    created = await client.post(
        "/v1/requests", json={"kind": "access", "identities": {"email": SUBJECT_EMAIL}}, headers=auth()
    )
    request_id = uuid.UUID(created.json()["id"])
    cut: list[str] = []

    def drop_at_progress_write(connection: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("UPDATE subject_request_system") and not cut:
            cut.append(statement)  # the server ends the connection as the system's outcome is written
            connection.connection.driver_connection.terminate()

    targets = TargetRegistry(settings)
    worker = jobs.RequestWorker(settings, store_engine, targets, "w")
    event.listen(store_engine.sync_engine, "before_cursor_execute", drop_at_progress_write)
    try:
        first = await worker.claim()
        assert first is not None
        assert await worker.process(first) == "deferred"
        assert cut  # the drop did happen, at the progress write
        event.remove(store_engine.sync_engine, "before_cursor_execute", drop_at_progress_write)
        await _deferred_then_expired(store_engine, request_id)
        second = await worker.claim()
        assert second is not None
        assert second.attempt == first.attempt + 1
        assert await worker.process(second) == "completed"
    finally:
        if event.contains(store_engine.sync_engine, "before_cursor_execute", drop_at_progress_write):
            event.remove(store_engine.sync_engine, "before_cursor_execute", drop_at_progress_write)
        await targets.dispose()
    body = (await client.get(f"/v1/requests/{request_id}", headers=auth())).json()
    assert body["status"] == "completed"
    assert body["export_available"] is True
    assert await _count(store_engine, "request.deferred", request_id) == 1
    assert await _count(store_engine, "request.failed", request_id) == 0
    assert await _count(store_engine, "request.completed", request_id) == 1


async def test_drain_runs_the_workers_side_by_side_and_completes_each_request_once(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine, crm: str
) -> None:
    """``lethe worker --once``: ``worker_count`` workers drain the queue together (one on SQLite),
    reflect the target once between them and complete every request exactly once."""
    await register_crm(client, auth())
    ids = []
    for _ in range(6):
        response = await client.post(
            "/v1/requests", json={"kind": "access", "identities": {"email": SUBJECT_EMAIL}}, headers=auth()
        )
        ids.append(uuid.UUID(response.json()["id"]))
    targets = TargetRegistry(settings)
    count = jobs.worker_count(settings)
    assert count == (1 if settings.is_sqlite else settings.worker_concurrency)
    assert settings.is_sqlite or count > 1
    workers = [jobs.RequestWorker(settings, store_engine, targets, f"w{i}") for i in range(count)]
    running, peak = 0, 0
    for worker in workers:
        process = worker.process

        async def tracked(claim: jobs.Claim, process: Callable[..., Any] = process) -> str:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                return str(await process(claim))
            finally:
                running -= 1

        worker.process = tracked  # type: ignore[method-assign]
    reflected = REFLECTIONS.labels(outcome="reflected")._value.get()
    try:
        await jobs.drain(workers)
        assert len(targets.reflections) == 1
        assert REFLECTIONS.labels(outcome="reflected")._value.get() - reflected <= count
    finally:
        await targets.dispose()
    assert peak == count
    async with store_engine.connect() as connection:
        statuses = (
            await connection.execute(select(SubjectRequest.status).where(SubjectRequest.id.in_(ids)))
        ).scalars()
        assert list(statuses) == ["completed"] * len(ids)
    for request_id in ids:
        assert await _count(store_engine, "request.completed", request_id) == 1


async def test_registering_a_manifest_drops_the_systems_kept_reflections(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine, crm: str
) -> None:
    await register_crm(client, auth())
    await client.post(
        "/v1/requests", json={"kind": "access", "identities": {"email": SUBJECT_EMAIL}}, headers=auth()
    )
    targets = TargetRegistry(settings)
    try:
        assert await jobs.RequestWorker(settings, store_engine, targets, "w").run_one()
        assert len(targets.reflections) == 1
        document = crm_manifest()
        document["tables"]["orders"]["purpose"] = "invoicing and delivery"
        async with AsyncSession(store_engine) as session, session.begin():
            _, created, _ = await register_manifest(
                ManifestService(session=session),
                load_any(msgspec.json.encode(document), "json"),
                targets,
                "t",
            )
        assert created
        assert len(targets.reflections) == 0
    finally:
        await targets.dispose()
