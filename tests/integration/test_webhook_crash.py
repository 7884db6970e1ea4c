"""A delivery worker killed with SIGKILL mid-send: another sends the event again, same webhook-id."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.db.store import upgrade_store
from app.db.webhooks import WebhookDelivery
from app.lib.auth import mint_token
from tests.conftest import TEST_AUDIT_KEY, TEST_CHAIN_KEY, TEST_JWT_SECRET, make_settings, store_engine_for
from tests.integration.test_webhooks import emit_received
from tests.integration.webhooks_support import CLIENT_SCOPES, receiver, until
from tests.servers import DatabaseServer

ARTIFACT_KEY = "dGVzdC1hcnRpZmFjdC1rZXktdGhhdC1pcy0zMi1ieXQ="


def _worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``lethe worker`` as its own process (request workers and delivery workers)."""
    return subprocess.Popen(
        [sys.executable, "-m", "app", "worker"], env={**os.environ, **env}, cwd=Path(__file__).parents[2]
    )


async def _delivery(store: AsyncEngine) -> WebhookDelivery:
    async with store.connect() as connection:
        return (await connection.execute(select(WebhookDelivery))).one()  # type: ignore[return-value]


@pytest.mark.postgres
async def test_killed_sender_is_replaced_and_the_event_arrives_with_one_id(
    postgres_server: DatabaseServer, tmp_path: Path
) -> None:
    store_url = await postgres_server.create_database("lethe_store")
    store = store_engine_for(store_url)
    try:
        await upgrade_store(store)
        settings = make_settings(tmp_path, database_url=store_url, webhook_allowed_hosts="127.0.0.1")
        headers = {
            "Authorization": "Bearer "
            + mint_token(settings, sub="shop", scopes=list(CLIENT_SCOPES), client_id="shop")
        }
        env = {
            "LETHE_DATABASE_URL": store_url,
            "LETHE_JWT_SECRET": TEST_JWT_SECRET,
            "LETHE_AUDIT_KEY": TEST_AUDIT_KEY,
            "LETHE_AUDIT_CHAIN_KEY": TEST_CHAIN_KEY,
            "LETHE_ARTIFACT_KEY": ARTIFACT_KEY,
            "LETHE_ARTIFACTS_DIR": settings.artifacts_dir,
            "LETHE_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "LETHE_WEBHOOK_LEASE_SECONDS": "2",
            "LETHE_WEBHOOK_POLL_SECONDS": "0.1",
            "LETHE_WEBHOOK_READ_TIMEOUT_SECONDS": "30",
            "LETHE_LOG_LEVEL": "ERROR",
        }
        with receiver(hang=1) as hooks:
            async with AsyncTestClient(app=create_app(settings)) as client:
                answer = await client.post(
                    "/v1/webhooks", json={"url": hooks.url, "events": ["request.received"]}, headers=headers
                )
                secret = answer.json()["secret"]
            await emit_received(settings, store, "shop")

            first = _worker(env)
            try:
                await until(lambda: asyncio.to_thread(hooks.hanging.wait, 0.1), seconds=60)
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
            finally:
                if first.poll() is None:
                    first.kill()
            row = await _delivery(store)
            assert (row.status, row.claim, row.attempts) == ("pending", 1, 0)

            second = _worker(env)
            try:

                async def delivered() -> bool:
                    return (await _delivery(store)).status == "delivered"

                await until(delivered, seconds=60)
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(timeout=30)
        row = await _delivery(store)
        assert (row.claim, row.attempts) == (2, 1)
        assert [hit.answered for hit in hooks.hits] == [0, 200]  # 0: the send the kill cut short
        assert hooks.hits[0].message_id == hooks.hits[1].message_id
        assert hooks.hits[0].verify(secret) == hooks.hits[1].verify(secret)
    finally:
        await store.dispose()
