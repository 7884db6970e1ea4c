"""Scheduling and resumption: one run per window across replicas, and a killed run resumed."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.audit import AuditEvent
from app.db.retention import RetentionPolicyRecord, RetentionRun
from app.db.store import create_store_engine
from app.domain.audit.sequencer import sequence_now
from app.domain.retention.cli import run_due
from app.domain.retention.jobs import RetentionRunner
from app.domain.retention.services import purge_policy
from app.engine.retention import BatchLimits, BatchReport, prepare_purge, purge_in_batches
from app.engine.targets import TargetRegistry
from tests.conftest import make_settings
from tests.integration.retention_crash import CRASH_STATUS
from tests.integration.retention_support import (
    SHOP_ENV,
    due_sessions,
    engine_for,
    make_target,
    register_shop,
    shop_manifest,
    snapshot,
)

DIALECTS = ["sqlite", "postgresql", "mysql"]


@pytest.fixture(params=DIALECTS)
async def shop(
    request: pytest.FixtureRequest, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The shop target on each dialect, registered in the store as system ``shop``."""
    url = await make_target(request, tmp_path, request.param)
    monkeypatch.setenv(SHOP_ENV, url)
    await register_shop(settings.database_url)
    return url


@asynccontextmanager
async def _runner(settings: Settings, owner: str) -> AsyncIterator[RetentionRunner]:
    """A replica's runner with its own store engine and target pools, closed afterwards."""
    engine, targets = create_store_engine(settings), TargetRegistry(settings)
    try:
        yield RetentionRunner(engine, targets, settings, owner=owner)
    finally:
        await targets.dispose()
        await engine.dispose()


async def _policy_id(settings: Settings, name: str) -> object:
    engine = create_store_engine(settings)
    try:
        async with AsyncSession(engine) as session:
            return await session.scalar(
                select(RetentionPolicyRecord.id).where(RetentionPolicyRecord.name == name)
            )
    finally:
        await engine.dispose()


async def _runs_of(settings: Settings, policy_id: object) -> list[RetentionRun]:
    engine = create_store_engine(settings)
    try:
        async with AsyncSession(engine) as session:
            query = select(RetentionRun).where(RetentionRun.policy_id == policy_id)
            return list((await session.scalars(query)).all())
    finally:
        await engine.dispose()


async def test_two_schedulers_started_together_run_a_policy_once(shop: str, settings: Settings) -> None:
    async with _runner(settings, "replica-a") as first, _runner(settings, "replica-b") as second:
        await first.sync()
        together = await asyncio.gather(first.run_due(), second.run_due())
        again = await asyncio.gather(first.run_due(), second.run_due())

    ran = [run for runs in together for run in runs]
    assert [r.policy_name for r in ran] == ["expired-sessions"], "only the scheduled policy is due, once"
    assert again == [[], []], "the window moved on: nothing is due until tomorrow"
    policy_id = await _policy_id(settings, "expired-sessions")
    stored = await _runs_of(settings, policy_id)
    assert len(stored) == 1
    assert stored[0].status == "completed"
    due = due_sessions(stored[0].cutoff)
    assert stored[0].rows_affected == len(due) > 0
    async with engine_for(shop) as target:
        left = {row[0] for row in await snapshot(target, "sessions")}
    assert left == set(range(1, 241)) - due
    engine = create_store_engine(settings)
    await sequence_now(engine)
    async with AsyncSession(engine) as session:
        events = await session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "retention.run_completed")
        )
    await engine.dispose()
    assert events == 1


async def test_killed_run_resumes_to_the_state_of_an_uninterrupted_run(
    request: pytest.FixtureRequest, tmp_path: Path, shop: str, settings: Settings
) -> None:
    settings = make_settings(tmp_path, database_url=settings.database_url, retention_lease_seconds="1")
    async with _runner(settings, "survivor") as runner:
        await runner.sync()
    policy_id = await _policy_id(settings, "soft-sessions")

    interrupted = await _crash_after_three_batches(settings, shop, policy_id)

    await _disable(settings, "expired-sessions")  # only the interrupted policy may touch sessions
    await asyncio.sleep(1.2)  # the dead replica's lease runs out
    async with _runner(settings, "survivor") as runner:
        resumed = [r for r in await runner.run_due() if r.policy_name == "soft-sessions"]

    assert [(r.id, r.status, r.attempt) for r in resumed] == [(interrupted.id, "completed", 2)]
    kind = "mysql" if shop.startswith("mysql") else shop.split("+")[0]
    twin_url = await make_target(request, tmp_path, kind, name="twin")
    async with engine_for(twin_url) as twin:
        async with twin.connect() as connection:
            record = await _policy_record(settings, policy_id)
            prepared = await prepare_purge(connection, purge_policy(record, shop_manifest()))

        async def ignore(report: BatchReport) -> None:
            del report

        await purge_in_batches(
            twin,
            prepared,
            cutoff=interrupted.cutoff,
            purge_at=interrupted.purge_at,
            cursor=None,
            limits=BatchLimits(),
            on_batch=ignore,
        )
        expected = await snapshot(twin, "sessions")
    async with engine_for(shop) as target:
        assert await snapshot(target, "sessions") == expected
    assert resumed[0].rows_affected == len(due_sessions(interrupted.cutoff))


async def _crash_after_three_batches(settings: Settings, shop: str, policy_id: object) -> RetentionRun:
    """Run the policy in a process (lease 1 s) that dies right after its third batch."""
    crashed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.retention_crash",
        settings.database_url,
        str(policy_id),
        "3",
        env={**os.environ, SHOP_ENV: shop},
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(crashed.communicate(), timeout=120)
    assert crashed.returncode == CRASH_STATUS, stderr.decode()[-2000:]
    [interrupted] = await _runs_of(settings, policy_id)
    assert (interrupted.status, interrupted.batches, interrupted.attempt) == ("running", 3, 1)
    return interrupted


@pytest.mark.parametrize("shop", ["sqlite"], indirect=True)
async def test_run_due_resumes_a_dead_run_once_the_lease_it_held_ran_out(
    tmp_path: Path, shop: str, settings: Settings
) -> None:
    """``lethe retention run-due`` (a CronJob with settings of its own, here the default 120 s
    lease) judges a dead run by the lease its holder took (1 s), not by its own setting."""
    async with _runner(settings, "service") as runner:
        await runner.sync()
    policy_id = await _policy_id(settings, "soft-sessions")
    interrupted = await _crash_after_three_batches(settings, shop, policy_id)
    await _disable(settings, "expired-sessions")

    await asyncio.sleep(1.2)  # the dead replica's 1 s lease runs out; 120 s would not have
    cronjob = make_settings(tmp_path, database_url=settings.database_url)
    assert cronjob.retention_lease_seconds == 120
    resumed = [r for r in await run_due(cronjob, owner="cronjob") if r.policy_name == "soft-sessions"]

    assert [(r.id, r.status, r.attempt) for r in resumed] == [(interrupted.id, "completed", 2)]
    assert resumed[0].rows_affected == len(due_sessions(interrupted.cutoff))


async def _policy_record(settings: Settings, policy_id: object) -> RetentionPolicyRecord:
    engine = create_store_engine(settings)
    try:
        async with AsyncSession(engine) as session:
            record = await session.get(RetentionPolicyRecord, policy_id)
            assert record is not None
            return record
    finally:
        await engine.dispose()


async def _disable(settings: Settings, name: str) -> None:
    engine = create_store_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(RetentionPolicyRecord).where(RetentionPolicyRecord.name == name).values(enabled=False)
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize("shop", ["sqlite"], indirect=True)
async def test_run_due_command_runs_what_is_due_once(tmp_path: Path, shop: str, settings: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
    env |= {
        "LETHE_JWT_SECRET": "cli-test-secret-that-is-at-least-32-bytes",
        "LETHE_AUDIT_KEY": "cli-test-audit-key-that-is-at-least-32-bytes",
        "LETHE_AUDIT_CHAIN_KEY": "cli-test-audit-key-that-is-at-least-32-bytes",
        "LETHE_DATABASE_URL": settings.database_url,
        SHOP_ENV: shop,
    }

    async def lethe(*args: str) -> tuple[int | None, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app", *args, env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        return process.returncode, out.decode()

    first = await lethe("retention", "run-due")
    second = await lethe("retention", "run-due")

    assert first[0] == 0, first[1]
    [line] = first[1].splitlines()
    run = json.loads(line)
    assert (run["policy_name"], run["status"], run["trigger"]) == (
        "expired-sessions",
        "completed",
        "schedule",
    )
    assert run["rows"] == len(due_sessions(datetime.fromisoformat(run["cutoff"])))
    assert second == (0, "no retention policy is due\n")


@pytest.mark.parametrize("shop", ["sqlite"], indirect=True)
async def test_a_scheduled_policy_the_table_no_longer_fits_is_a_visible_failed_run(
    shop: str, settings: Settings
) -> None:
    del shop
    async with _runner(settings, "replica-a") as runner:
        await runner.sync()
        engine = create_store_engine(settings)
        async with engine.begin() as connection:
            await connection.execute(
                update(RetentionPolicyRecord)
                .where(RetentionPolicyRecord.name == "expired-sessions")
                .values(age_column="last_seen")
            )
        await engine.dispose()
        [run] = await runner.run_due()
    assert (run.status, run.rows_affected) == ("failed", 0)
    assert run.error is not None
    assert "column 'last_seen' does not exist in table 'sessions'" in run.error
