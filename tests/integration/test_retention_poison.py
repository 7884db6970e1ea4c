"""A poisoned retention policy is a failed run; it never stops the scheduler or other policies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.asgi import create_app
from app.config import Settings
from app.db.retention import RetentionPolicyRecord, RetentionRun
from app.db.store import create_store_engine
from app.domain.retention.jobs import RetentionRunner, RetentionScheduler
from app.engine.targets import TargetRegistry
from app.lib.loops import LOOP_DEATHS
from tests.integration.retention_support import SHOP_ENV, make_target, register_shop


@pytest.fixture
async def shop(
    request: pytest.FixtureRequest, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> str:
    url = await make_target(request, tmp_path, "sqlite")
    monkeypatch.setenv(SHOP_ENV, url)
    await register_shop(settings.database_url)
    return url


async def _poison(settings: Settings) -> None:
    """A policy stored before durations were bounded (or written around the API)."""
    engine = create_store_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(RetentionPolicyRecord)
                .where(RetentionPolicyRecord.name == "expired-sessions")
                .values(older_than="P99999999Y")
            )
            await connection.execute(
                update(RetentionPolicyRecord)
                .where(RetentionPolicyRecord.name == "old-orders")
                .values(schedule="P1D", next_due_at=RetentionPolicyRecord.created_at)
            )
    finally:
        await engine.dispose()


async def test_run_due_records_the_poisoned_policy_and_runs_the_others(shop: str, settings: Settings) -> None:
    del shop
    engine, targets = create_store_engine(settings), TargetRegistry(settings)
    runner = RetentionRunner(engine, targets, settings, owner="replica-a")
    try:
        await runner.sync()
        await _poison(settings)
        runs = {run.policy_name: run for run in await runner.run_due()}
        assert runs["expired-sessions"].status == "failed"
        assert runs["old-orders"].status == "completed"
        # The scheduler keeps ticking past it.
        scheduler = asyncio.create_task(RetentionScheduler(runner, 0.01).serve())
        await asyncio.sleep(0.2)
        assert not scheduler.done()
        scheduler.cancel()
        with pytest.raises(asyncio.CancelledError):
            await scheduler
        async with AsyncSession(engine) as session:
            failed = await session.scalars(select(RetentionRun).where(RetentionRun.status == "failed"))
            assert {run.policy_name for run in failed} == {"expired-sessions"}
    finally:
        await targets.dispose()
        await engine.dispose()


async def test_a_dead_background_loop_fails_readiness_and_is_counted(settings: Settings) -> None:
    app = create_app(settings)
    before = LOOP_DEATHS.labels(loop="doomed")._value.get()

    async def doomed() -> None:
        raise RuntimeError

    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/readyz")).status_code == 200
        app.state.loops.start("doomed", doomed)
        await asyncio.sleep(0.05)
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert "doomed" in response.json()["detail"]
        metrics = (await client.get("/metrics")).text
        assert 'lethe_background_loop_deaths_total{loop="doomed"}' in metrics
    assert LOOP_DEATHS.labels(loop="doomed")._value.get() == before + 1
