"""Workers pick up a queued request at once (woken on commit, and by NOTIFY across replicas),
long before their next poll."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.asgi import create_app
from app.domain.requests.wakeup import CHANNEL, listen_for_work, wait_for_work
from tests.conftest import make_settings
from tests.integration.requests_support import SUBJECT_EMAIL, TARGET_ENV, create_crm, register_crm

POLL_SECONDS = "30"
"""Far longer than the test waits: only a wake-up can make the request run in time."""


async def test_a_queued_request_is_picked_up_without_waiting_for_the_poll(
    tmp_path: Path, store_url: str, token: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    await create_crm(crm)
    monkeypatch.setenv(TARGET_ENV, crm)
    settings = make_settings(
        tmp_path, database_url=store_url, workers_enabled="true", worker_poll_seconds=POLL_SECONDS
    )
    headers = {"Authorization": f"Bearer {token()}"}
    async with AsyncTestClient(app=create_app(settings)) as client:
        await register_crm(client, headers)
        await asyncio.sleep(0.5)  # the workers have polled once and are idle now
        body = {"kind": "access", "identities": {"email": SUBJECT_EMAIL}}
        started = time.monotonic()
        created = await client.post("/v1/requests", json=body, headers=headers)
        assert created.status_code == 202, created.text
        status = created.json()["status"]
        while status not in ("completed", "failed") and time.monotonic() - started < 10:
            await asyncio.sleep(0.02)
            status = (await client.get(created.headers["location"], headers=headers)).json()["status"]
        assert status == "completed"
        assert time.monotonic() - started < 10 < float(POLL_SECONDS)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_a_notify_from_another_replica_wakes_the_listener(store_url: str) -> None:
    """A plain connection (not this process's store session) sends the notification: only the
    LISTEN connection can carry it to the waiting workers."""
    listener_engine = create_async_engine(store_url)
    other_replica = create_async_engine(store_url)
    stop = asyncio.Event()
    listener = asyncio.create_task(listen_for_work(listener_engine, stop))
    try:
        await asyncio.sleep(0.5)  # LISTEN is in place
        waiting = asyncio.create_task(wait_for_work(stop, 30.0))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        async with other_replica.begin() as connection:
            await connection.execute(text("SELECT pg_notify(:c, '')"), {"c": CHANNEL})
        await asyncio.wait_for(waiting, timeout=5)
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        await listener
        await listener_engine.dispose()
        await other_replica.dispose()
