"""Per-client rate limits per scope, counted in the store and shared by replicas."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.db.models import RateLimitWindow
from app.lib.errors import TooManyRequests
from app.lib.ratelimit import Limit, RateLimiter
from tests.conftest import make_settings


def _consent(number: int) -> dict[str, object]:
    return {
        "subject": f"person{number}@example.com",
        "purpose": "newsletter",
        "granted": True,
        "policy_version": "v1",
        "text_hash": "a" * 64,
        "source": "web",
    }


async def test_a_client_past_its_limit_gets_429_on_every_replica(
    tmp_path: Path, store_url: str, token: Callable[..., str]
) -> None:
    settings = make_settings(tmp_path, database_url=store_url, rate_limits="consent:write=3/3600")

    def auth(client_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token('consent:write', 'consent:read', sub=client_id)}"}

    async with (
        AsyncTestClient(app=create_app(settings)) as first,
        AsyncTestClient(app=create_app(settings)) as second,
    ):
        for number, replica in enumerate((first, second, first)):
            response = await replica.post("/v1/consents", json=_consent(number), headers=auth("a"))
            assert response.status_code == 201, response.text
        refused = await second.post("/v1/consents", json=_consent(9), headers=auth("a"))
        assert refused.status_code == 429
        assert refused.json()["type"] == "urn:lethe:problem:too-many-requests"
        assert 1 <= int(refused.headers["retry-after"]) <= 3600
        # Another client, and another scope of the same client, are not affected.
        assert (await second.post("/v1/consents", json=_consent(10), headers=auth("b"))).status_code == 201
        listed = await first.get("/v1/consents?subject=person1@example.com", headers=auth("a"))
        assert listed.status_code == 200


async def _next_window(seconds: int) -> None:
    await asyncio.sleep(seconds - time.time() % seconds + 0.02)


async def test_a_new_window_counts_afresh_and_forgets_the_clients_older_ones(
    store_engine: AsyncEngine,
) -> None:
    limiter = RateLimiter(store_engine, {"consent:write": Limit(2, 1)})
    await _next_window(1)
    await limiter.hit("a", "consent:write")
    await limiter.hit("a", "consent:write")
    with pytest.raises(TooManyRequests):
        await limiter.hit("a", "consent:write")
    await limiter.hit("b", "consent:write")
    await limiter.hit("a", "requests:read")  # not limited: not counted
    await _next_window(1)
    await limiter.hit("a", "consent:write")
    async with store_engine.connect() as connection:
        rows = (await connection.execute(select(RateLimitWindow.client_id, RateLimitWindow.calls))).all()
    # a's full window is gone, its new one holds one call; b's older window waits for b's next call
    assert sorted(tuple(row) for row in rows) == [("a", 1), ("b", 1)]
