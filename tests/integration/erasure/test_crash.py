"""A worker killed with SIGKILL during a batched erasure on PostgreSQL: another one finishes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from app.asgi import create_app
from app.db.audit import AuditEvent
from app.db.requests import SubjectRequest, SubjectRequestSystem
from app.db.store import upgrade_store
from app.domain.audit.sequencer import sequence_now
from app.engine.erasure import ErasureOptions, execute_erasure
from app.lib.auth import ALL_SCOPES, mint_token
from tests.conftest import TEST_AUDIT_KEY, TEST_CHAIN_KEY, TEST_JWT_SECRET, make_settings, store_engine_for
from tests.integration.erasure import schema
from tests.servers import DatabaseServer

ENV = "LETHE_TARGET_ERASURETEST_URL"
EXTRA = 1500  # comments and device logs of the subject, erased in batches


async def _target(server: DatabaseServer) -> str:
    url = await server.create_database("lethe_erasure_crash")
    engine = create_async_engine(url)
    try:
        await schema.create_target(engine, 4)
        async with engine.begin() as conn:
            await conn.execute(
                insert(schema.comments),
                [{"id": 10_000 + i, "user_id": 1, "parent_id": None, "body": f"c{i}"} for i in range(EXTRA)],
            )
            await conn.execute(
                insert(schema.device_logs),
                [
                    {"id": 10_000 + i, "account_ref": 1, "ip_address": f"10.1.{i % 250}.1"}
                    for i in range(EXTRA)
                ],
            )
    finally:
        await engine.dispose()
    return url


async def _until(predicate: Callable[[], Awaitable[bool]], seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", "worker"], env={**os.environ, **env}, cwd=Path(__file__).parents[3]
    )


@pytest.mark.postgres
async def test_killed_erasure_worker_is_finished_by_another(
    postgres_server: DatabaseServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_url = await postgres_server.create_database("lethe_store")
    store = store_engine_for(store_url)
    await upgrade_store(store)
    target_url = await _target(postgres_server)
    reference_url = await _target(postgres_server)
    monkeypatch.setenv(ENV, target_url)
    settings = make_settings(tmp_path, database_url=store_url)
    headers = {"Authorization": f"Bearer {mint_token(settings, sub='crash-test', scopes=list(ALL_SCOPES))}"}
    env = {
        "LETHE_DATABASE_URL": store_url,
        "LETHE_JWT_SECRET": TEST_JWT_SECRET,
        "LETHE_AUDIT_KEY": TEST_AUDIT_KEY,
        "LETHE_AUDIT_CHAIN_KEY": TEST_CHAIN_KEY,
        "LETHE_ARTIFACT_KEY": "dGVzdC1hcnRpZmFjdC1rZXktdGhhdC1pcy0zMi1ieXQ=",
        "LETHE_WORKER_LEASE_SECONDS": "2",
        "LETHE_WORKER_POLL_SECONDS": "0.2",
        "LETHE_ERASURE_BATCH_THRESHOLD": "100",
        "LETHE_ERASURE_BATCH_SIZE": "50",
        "LETHE_LOG_LEVEL": "ERROR",
        ENV: target_url,
    }
    async with AsyncTestClient(app=create_app(settings)) as client:
        document = msgspec.to_builtins(schema.manifest())
        assert (await client.post("/v1/manifests", json=document, headers=headers)).status_code in (200, 201)
        created = await client.post(
            "/v1/requests", json={"kind": "erasure", "identities": {"user_id": "1"}}, headers=headers
        )
        request_id = uuid.UUID(created.json()["id"])

        async def mid_erasure() -> bool:
            async with store.connect() as conn:
                cursor = (
                    await conn.execute(
                        select(SubjectRequestSystem.cursor).where(
                            SubjectRequestSystem.request_id == request_id
                        )
                    )
                ).scalar_one_or_none()
            return bool(cursor) and int(cursor.get("batches", 0)) >= 5

        first = _worker({**env, "LETHE_ERASURE_BATCH_DELAY_SECONDS": "0.1"})
        try:
            await _until(mid_erasure, seconds=60)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
        async with store.connect() as conn:
            status = (
                await conn.execute(select(SubjectRequest.status).where(SubjectRequest.id == request_id))
            ).scalar_one()
        assert status == "running"
        partial = create_async_engine(target_url)
        try:
            async with partial.connect() as conn:
                left = (
                    await conn.execute(
                        select(func.count())
                        .select_from(schema.comments)
                        .where(schema.comments.c.user_id == 1)
                    )
                ).scalar_one()
        finally:
            await partial.dispose()
        assert 0 < left < EXTRA + 2  # killed mid-way

        second = _worker(env)
        try:

            async def completed() -> bool:
                async with store.connect() as conn:
                    row = (
                        await conn.execute(
                            select(SubjectRequest.status).where(SubjectRequest.id == request_id)
                        )
                    ).scalar_one()
                return bool(row == "completed")

            await _until(completed, seconds=90)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)

    await sequence_now(store)
    async with store.connect() as conn:
        counts: dict[str, Any] = dict(
            (
                await conn.execute(
                    select(AuditEvent.action, func.count())
                    .where(AuditEvent.request_id == str(request_id))
                    .group_by(AuditEvent.action)
                )
            ).all()
        )
    await store.dispose()
    assert counts["request.completed"] == 1
    assert counts["erasure.system_completed"] == 1
    assert counts["request.resumed"] == 1

    reference = create_async_engine(reference_url)
    erased = create_async_engine(target_url)
    try:
        options = ErasureOptions(secret=TEST_AUDIT_KEY)
        await execute_erasure(reference, schema.manifest(), {"user_id": "1"}, options)
        assert await schema.snapshot(erased) == await schema.snapshot(reference)
    finally:
        await reference.dispose()
        await erased.dispose()
