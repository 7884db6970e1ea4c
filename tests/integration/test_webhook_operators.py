"""Operator events: a failed retention run and a critical backup reach operators' subscriptions only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.config import Settings
from app.db.retention import RetentionPolicyRecord
from app.domain.retention.jobs import RetentionRunner
from app.domain.webhooks.operators import announce_critical_backups
from app.engine.backups.verdicts import BackupHealth, Check, SystemHealth
from app.engine.targets import TargetRegistry
from tests.conftest import make_settings
from tests.integration.retention_support import SHOP_ENV, make_target, register_shop
from tests.integration.test_webhooks import send_due
from tests.integration.webhooks_support import CLIENT_SCOPES, receiver

Headers = Callable[..., dict[str, str]]
OPERATOR_SCOPES = ("webhooks:read", "webhooks:write", "requests:admin", "retention:read")


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    return make_settings(tmp_path, database_url=store_url, webhook_allowed_hosts="127.0.0.1")


async def test_a_failed_retention_run_is_announced_to_operators(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SHOP_ENV, await make_target(request, tmp_path, "sqlite"))
    await register_shop(settings.database_url)
    operator = auth(*OPERATOR_SCOPES, sub="dpo", client_id="dpo")
    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    with receiver() as ops, receiver() as shop:
        events = {"events": ["retention.run_failed", "backups.critical"]}
        assert (
            await client.post("/v1/webhooks", json={"url": ops.url, **events}, headers=operator)
        ).status_code == 201
        assert (
            await client.post("/v1/webhooks", json={"url": shop.url, **events}, headers=caller)
        ).status_code == 201
        targets = TargetRegistry(settings)
        runner = RetentionRunner(store_engine, targets, settings, owner="replica-a")
        try:
            await runner.sync()
            async with store_engine.begin() as connection:
                await connection.execute(
                    update(RetentionPolicyRecord)
                    .where(RetentionPolicyRecord.name == "expired-sessions")
                    .values(age_column="last_seen")
                )
            [run] = await runner.run_due()
        finally:
            await targets.dispose()
        assert run.status == "failed"
        health = BackupHealth(
            status="critical",
            checked_at=datetime.now(UTC),
            systems=[
                SystemHealth(
                    system="shop",
                    status="critical",
                    checks=[
                        Check(
                            source="dumps",
                            kind="directory",
                            check="freshness",
                            status="critical",
                            reason="newest dump is 3d old",
                        )
                    ],
                )
            ],
        )
        sessions = async_sessionmaker(store_engine, expire_on_commit=False)
        assert await announce_critical_backups(sessions, health) == 1
        assert await announce_critical_backups(sessions, health) == 0  # once a day per system
        await send_due(settings, store_engine)
    # order is kept per request only: these two events belong to none, so they may arrive either way
    received = {hit.event["type"]: hit.event["data"] for hit in ops.hits}
    assert len(ops.hits) == 2
    assert received.keys() == {"retention.run_failed", "backups.critical"}
    failed = received["retention.run_failed"]
    assert (failed["run_id"], failed["system"], failed["status"]) == (str(run.id), "shop", "failed")
    assert received["backups.critical"]["checks"][0]["check"] == "freshness"
    assert shop.hits == []  # a calling client's subscription never sees operator events
