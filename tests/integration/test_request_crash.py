"""A worker killed with SIGKILL mid-export: another resumes, one completion, the same artifact."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.db.audit import AuditEvent
from app.db.requests import SubjectRequest
from app.db.store import upgrade_store
from app.domain.audit.sequencer import sequence_now
from app.lib.auth import ALL_SCOPES, mint_token
from tests.conftest import TEST_AUDIT_KEY, TEST_CHAIN_KEY, TEST_JWT_SECRET, make_settings, store_engine_for
from tests.integration.requests_support import SUBJECT_EMAIL, TARGET_ENV, create_crm, drain, register_crm
from tests.servers import DatabaseServer

ARTIFACT_KEY = "dGVzdC1hcnRpZmFjdC1rZXktdGhhdC1pcy0zMi1ieXQ="


def _worker(env: dict[str, str], **overrides: str) -> subprocess.Popen[bytes]:
    """``lethe worker`` as its own process (what a Deployment of workers runs)."""
    full = {**os.environ, **env, **{f"LETHE_{k.upper()}": v for k, v in overrides.items()}}
    return subprocess.Popen([sys.executable, "-m", "app", "worker"], env=full, cwd=Path(__file__).parents[2])


async def _request_row(store: AsyncEngine, request_id: uuid.UUID) -> Any:
    async with store.connect() as connection:
        return (await connection.execute(select(SubjectRequest).where(SubjectRequest.id == request_id))).one()


async def _until(predicate: Callable[[], Any], seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.1)


def _comparable_json(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k not in ("request_id", "generated_at")}


def _zip_entries(content: bytes) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(content))
    return {name: archive.read(name) for name in archive.namelist() if name != "request.json"}


@pytest.mark.postgres
async def test_killed_worker_is_resumed_with_one_completion(
    postgres_server: DatabaseServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_url = await postgres_server.create_database("lethe_store")
    store = store_engine_for(store_url)
    try:
        await _scenario(store, store_url, postgres_server, tmp_path, monkeypatch)
    finally:
        await store.dispose()


async def _scenario(
    store: AsyncEngine,
    store_url: str,
    postgres_server: DatabaseServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await upgrade_store(store)
    target = await postgres_server.create_database("lethe_crm")
    await create_crm(target, people=3, orders_per_person=3000)
    monkeypatch.setenv(TARGET_ENV, target)
    settings = make_settings(tmp_path, database_url=store_url)
    headers = {"Authorization": f"Bearer {mint_token(settings, sub='crash-test', scopes=list(ALL_SCOPES))}"}
    env = {
        "LETHE_DATABASE_URL": store_url,
        "LETHE_JWT_SECRET": TEST_JWT_SECRET,
        "LETHE_AUDIT_KEY": TEST_AUDIT_KEY,
        "LETHE_AUDIT_CHAIN_KEY": TEST_CHAIN_KEY,
        "LETHE_ARTIFACT_KEY": ARTIFACT_KEY,
        "LETHE_ARTIFACTS_DIR": settings.artifacts_dir,
        "LETHE_WORKER_LEASE_SECONDS": "2",
        "LETHE_WORKER_POLL_SECONDS": "0.2",
        "LETHE_EXPORT_BATCH_ROWS": "200",
        "LETHE_LOG_LEVEL": "ERROR",
        TARGET_ENV: target,
    }
    async with AsyncTestClient(app=create_app(settings)) as client:
        await register_crm(client, headers)
        body = {"kind": "access", "identities": {"email": SUBJECT_EMAIL}}
        created = (await client.post("/v1/requests", json=body, headers=headers)).json()
        request_id = uuid.UUID(created["id"])
        partial = Path(settings.artifacts_dir) / f"{request_id}.1.json.enc.partial"

        first = _worker(env, export_batch_delay_seconds="0.2")
        try:

            async def mid_export() -> bool:
                return partial.exists() and partial.stat().st_size > 64 * 1024

            await _until(mid_export, seconds=60)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
        row = await _request_row(store, request_id)
        assert (row.status, row.attempt) == ("running", 1)

        second = _worker(env)
        try:

            async def completed() -> bool:
                return (await _request_row(store, request_id)).status == "completed"

            await _until(completed, seconds=60)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
        row = await _request_row(store, request_id)
        assert row.attempt == 2
        assert row.artifact_attempt == 2
        await sequence_now(store)
        async with store.connect() as connection:
            counts = dict(
                (
                    await connection.execute(
                        select(AuditEvent.action, func.count())
                        .where(AuditEvent.request_id == str(request_id))
                        .group_by(AuditEvent.action)
                    )
                ).all()
            )
        assert counts == {
            "request.received": 1,
            "request.queued": 1,
            "request.running": 1,
            "request.resumed": 1,
            "request.completed": 1,
        }
        leftovers = sorted(p.name for p in Path(settings.artifacts_dir).iterdir())
        assert leftovers == [f"{request_id}.2.json.enc", f"{request_id}.2.zip.enc"]

        resumed_json = (await client.get(f"/v1/requests/{request_id}/export", headers=headers)).json()
        resumed_zip = (
            await client.get(f"/v1/requests/{request_id}/export?format=zip", headers=headers)
        ).content

        # the same subject exported by an uninterrupted run
        again = (await client.post("/v1/requests", json=body, headers=headers)).json()
        assert await drain(settings, store) == 1
        clean_json = (await client.get(f"/v1/requests/{again['id']}/export", headers=headers)).json()
        clean_zip = (
            await client.get(f"/v1/requests/{again['id']}/export?format=zip", headers=headers)
        ).content
    assert resumed_json["systems"]["crm"]["tables"]["order_items"]["row_count"] == 6000
    assert _comparable_json(resumed_json) == _comparable_json(clean_json)
    assert _zip_entries(resumed_zip) == _zip_entries(clean_zip)
