"""Backups against real pg_dump/pg_restore on PostgreSQL: health, restore tests, erasure replay."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from app.cli import lethe_group
from app.config import Settings, get_settings
from app.db.audit import ErasureTombstone
from app.domain.audit.references import tombstone_reference
from app.domain.audit.sequencer import sequence_now
from app.domain.backups import replay as replay_service
from app.domain.manifests.services import ManifestService
from app.engine.backups import DumpFile
from app.engine.erasure import ErasureOptions, execute_erasure
from app.engine.restore import RestoreExpectation, key_hasher, restore_test
from app.engine.subjects import subject_key_reference
from app.engine.targets import TargetRegistry
from app.manifest.loading import load_manifest
from app.manifest.model import Manifest
from tests.conftest import TEST_AUDIT_KEY, TEST_CHAIN_KEY, TEST_JWT_SECRET, make_settings
from tests.servers import DatabaseServer

SYSTEM = "shop"
TARGET_VARIABLE = "LETHE_TARGET_BACKUPSHOP_URL"
SCRATCH_VARIABLE = "LETHE_TEST_BACKUP_SCRATCH_URL"
ERASED = (2, 4)
"""Users erased after the dump was taken."""

SHOP_SCHEMA = (
    "CREATE TABLE users (id integer PRIMARY KEY, email text NOT NULL UNIQUE, name text)",
    "CREATE TABLE orders (id integer PRIMARY KEY, user_id integer NOT NULL REFERENCES users, total integer)",
    "INSERT INTO users SELECT g, 'user' || g || '@example.com', 'User ' || g FROM generate_series(1, 6) g",
    "INSERT INTO orders SELECT g, 1 + g % 6, g * 10 FROM generate_series(1, 12) g",
)

MANIFEST = {
    "system": SYSTEM,
    "connection": {"env": TARGET_VARIABLE},
    "subject": {"table": "users", "key": "id", "identities": {"email": "email"}},
    "tables": {
        "users": {
            "strategy": "delete",
            "columns": {
                "email": {"category": "user.contact.email"},
                "name": {"category": "user.name"},
            },
        },
        "orders": {"strategy": "delete", "link": {"path": [{"from": "user_id", "to": "users"}]}},
    },
}


def libpq_url(url: str) -> str:
    """The plain ``postgresql://`` form pg_dump and pg_restore understand."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def pg_dump(url: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pg_dump", "-Fc", "--no-owner", "-f", str(path), "--dbname", libpq_url(url)], check=True)
    return path


def restore_into(url: str, dump: Path) -> None:
    """A real restore of the target from a dump (what an operator does after a disaster)."""
    subprocess.run(["pg_restore", "--no-owner", "--dbname", libpq_url(url), str(dump)], check=True)


def write_sidecar(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n", encoding="utf-8")


def age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


async def execute(url: str, *statements: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def database_exists(server: DatabaseServer, name: str) -> bool:
    found = await scalar(server.admin_url, f"SELECT count(*) FROM pg_database WHERE datname = '{name}'")
    return bool(found)


async def scalar(url: str, statement: str) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.scalar(text(statement))
    finally:
        await engine.dispose()


@dataclass
class Shop:
    """The target database of system ``shop``, its dump directory and the scratch server."""

    url: str
    dumps: Path
    server: DatabaseServer


@pytest.fixture
async def shop(postgres_server: DatabaseServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Shop:
    url = await postgres_server.create_database("lethe_shop")
    await execute(url, *SHOP_SCHEMA)
    monkeypatch.setenv(TARGET_VARIABLE, url)
    monkeypatch.setenv(SCRATCH_VARIABLE, postgres_server.admin_url)
    return Shop(url=url, dumps=tmp_path / "dumps", server=postgres_server)


@pytest.fixture
def settings(tmp_path: Path, store_url: str, shop: Shop) -> Settings:
    """Test settings whose backup sources are the shop's dump directory."""
    config = {
        "systems": {
            SYSTEM: {
                "scratch": {"env": SCRATCH_VARIABLE},
                "sources": [{"kind": "directory", "path": str(shop.dumps), "pattern": "*.dump"}],
            }
        }
    }
    path = tmp_path / "backups.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return make_settings(
        tmp_path, database_url=store_url, backup_sources=str(path), backup_rpo_seconds="86400"
    )


@pytest.fixture
async def manifest(store_engine: AsyncEngine) -> Manifest:
    """The shop's manifest, registered in the store."""
    loaded = load_manifest(json.dumps(MANIFEST), "json")
    async with AsyncSession(store_engine, expire_on_commit=False) as session, session.begin():
        await ManifestService(session=session).store(loaded, "test-operator")
    return loaded


async def erase(shop: Shop, store_engine: AsyncEngine, keys: tuple[int, ...]) -> datetime:
    """Erase users by e-mail through the erasure engine and tombstone them as its worker does."""
    erased_at = datetime.now(UTC)
    manifest = load_manifest(json.dumps(MANIFEST), "json")
    target = create_async_engine(shop.url)
    try:
        for key in keys:
            outcome = await execute_erasure(
                target, manifest, {"email": f"user{key}@example.com"}, ErasureOptions(secret=TEST_AUDIT_KEY)
            )
            assert outcome.found
            assert outcome.subject_key == (key,)
            async with AsyncSession(store_engine) as session, session.begin():
                reference = subject_key_reference(TEST_AUDIT_KEY, SYSTEM, outcome.subject_key)
                session.add(ErasureTombstone(system=SYSTEM, subject_key_ref=reference, erased_at=erased_at))
    finally:
        await target.dispose()
    return erased_at


def refs(*keys: int) -> list[str]:
    return sorted(tombstone_reference(TEST_AUDIT_KEY, SYSTEM, key) for key in keys)


async def health_of(client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]]) -> dict[str, Any]:
    response = await client.get("/v1/backups/health", headers=auth("backups:read"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def checks_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (system,) = body["systems"]
    assert system["system"] == SYSTEM
    return {check["check"]: check for check in system["checks"]}


async def finished(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]], location: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        response = await client.get(location, headers=auth("backups:read"))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] != "running":
            return body
        assert time.monotonic() < deadline, "restore test still running after 60s"
        await asyncio.sleep(0.2)


# --- health -----------------------------------------------------------------------------------


async def test_fresh_dump_with_matching_checksum_is_ok(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]], shop: Shop
) -> None:
    for day in (3, 2, 1):
        dump = pg_dump(shop.url, shop.dumps / f"shop-{day}.dump")
        write_sidecar(dump)
        age(dump, day * 86_400 - 3600)
    newest = pg_dump(shop.url, shop.dumps / "shop-0.dump")
    write_sidecar(newest)
    body = await health_of(client, auth)
    checks = checks_of(body)
    assert body["status"] == "ok", checks
    assert {name: c["status"] for name, c in checks.items()} == {
        "freshness": "ok",
        "size": "ok",
        "checksum": "ok",
    }
    assert checks["freshness"]["age_seconds"] < 60
    assert checks["freshness"]["size_bytes"] == newest.stat().st_size


async def test_dump_older_than_the_rpo_is_critical_with_its_age(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]], shop: Shop
) -> None:
    dump = pg_dump(shop.url, shop.dumps / "shop.dump")
    write_sidecar(dump)
    age(dump, 3 * 86_400 + 120)
    body = await health_of(client, auth)
    freshness = checks_of(body)["freshness"]
    assert body["status"] == "critical"
    assert freshness["status"] == "critical"
    assert freshness["reason"] == "newest dump matching *.dump is 3d 0h old, beyond the RPO 1d 0h"
    assert freshness["age_seconds"] == pytest.approx(3 * 86_400 + 120, abs=30)


async def test_truncated_dump_with_a_mismatching_sidecar_is_critical(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]], shop: Shop
) -> None:
    dump = pg_dump(shop.url, shop.dumps / "shop.dump")
    write_sidecar(dump)
    content = dump.read_bytes()
    dump.write_bytes(content[: len(content) // 2])
    body = await health_of(client, auth)
    checksum = checks_of(body)["checksum"]
    assert body["status"] == "critical"
    assert checksum["status"] == "critical"
    assert "does not match its .sha256 sidecar" in checksum["reason"]


async def test_no_dump_at_all_is_critical_and_health_needs_its_scope(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]], shop: Shop
) -> None:
    shop.dumps.mkdir()
    body = await health_of(client, auth)
    assert checks_of(body)["freshness"]["reason"] == "no dump matching *.dump found"
    denied = await client.get("/v1/backups/health", headers=auth("backups:run"))
    assert denied.status_code == 403


async def test_malformed_sources_file_is_503_naming_the_key(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]], settings: Settings
) -> None:
    assert settings.backup_sources is not None
    Path(settings.backup_sources).write_text("systems: {shop: {sources: [{kind: directory, paht: /x}]}}")
    response = await client.get("/v1/backups/health", headers=auth("backups:read"))
    assert response.status_code == 503
    assert "paht" in response.json()["detail"]


async def test_metrics_expose_backup_age_status_and_restore_test_age(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]], shop: Shop, manifest: Manifest
) -> None:
    write_sidecar(pg_dump(shop.url, shop.dumps / "shop.dump"))
    started = await client.post(
        "/v1/backups/restore-tests", json={"system": SYSTEM}, headers=auth("backups:run")
    )
    assert started.status_code == 202, started.text
    assert (await finished(client, auth, started.headers["location"]))["status"] == "passed"
    await health_of(client, auth)
    metrics = (await client.get("/metrics")).text
    assert 'lethe_backup_newest_age_seconds{source="directory",system="shop"}' in metrics
    assert 'lethe_backup_status{check="checksum",source="directory",system="shop"} 0.0' in metrics
    assert 'lethe_backup_restore_test_age_seconds{system="shop"}' in metrics


# --- restore tests ----------------------------------------------------------------------------


async def test_restore_test_of_a_dump_taken_before_an_erasure_reports_exactly_the_erased_subjects(
    client: AsyncTestClient[Litestar],
    auth: Callable[..., dict[str, str]],
    shop: Shop,
    manifest: Manifest,
    store_engine: AsyncEngine,
) -> None:
    write_sidecar(pg_dump(shop.url, shop.dumps / "shop.dump"))
    await erase(shop, store_engine, ERASED)
    # A subject erased in another system must not be counted here.
    async with AsyncSession(store_engine) as session, session.begin():
        session.add(
            ErasureTombstone(
                system="crm",
                subject_key_ref=tombstone_reference(TEST_AUDIT_KEY, "crm", 1),
                erased_at=datetime.now(UTC),
            )
        )

    started = await client.post(
        "/v1/backups/restore-tests", json={"system": SYSTEM}, headers=auth("backups:run")
    )
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "running"
    result = await finished(client, auth, started.headers["location"])

    assert result["status"] == "passed", result
    assert result["resurrected_subjects"] == len(ERASED)
    assert result["resurrected_refs"] == refs(*ERASED)
    assert result["tables"] == {"users": 6, "orders": 12}
    assert result["missing_tables"] == result["empty_tables"] == []
    assert result["dump_name"] == "shop.dump"
    assert result["scratch_dropped"] is True
    assert result["scratch_database"].startswith("lethe_restore_")
    assert not await database_exists(shop.server, result["scratch_database"])
    await sequence_now(store_engine)
    async with AsyncSession(store_engine) as session:
        actions = (await session.scalars(text("SELECT action FROM audit_event ORDER BY seq"))).all()
    assert actions[-2:] == ["backup.restore_test_started", "backup.restore_tested"]


async def test_restore_test_of_a_broken_dump_fails_and_still_drops_the_scratch_database(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]], shop: Shop, manifest: Manifest
) -> None:
    dump = pg_dump(shop.url, shop.dumps / "shop.dump")
    content = dump.read_bytes()
    dump.write_bytes(content[: len(content) * 2 // 3])
    started = await client.post(
        "/v1/backups/restore-tests", json={"system": SYSTEM}, headers=auth("backups:run")
    )
    result = await finished(client, auth, started.headers["location"])
    assert result["status"] == "failed"
    assert result["reason"]
    assert result["scratch_dropped"] is True
    assert not await database_exists(shop.server, result["scratch_database"])


async def test_restore_test_fails_when_a_manifest_table_is_empty_in_the_backup(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]], shop: Shop, manifest: Manifest
) -> None:
    await execute(shop.url, "DELETE FROM orders")
    write_sidecar(pg_dump(shop.url, shop.dumps / "shop.dump"))
    started = await client.post(
        "/v1/backups/restore-tests", json={"system": SYSTEM}, headers=auth("backups:run")
    )
    result = await finished(client, auth, started.headers["location"])
    assert result["status"] == "failed"
    assert result["tables"] == {"users": 6, "orders": 0}
    assert result["empty_tables"] == ["orders"]
    assert result["reason"] == "0 manifest table(s) missing, 1 empty in the restored copy"


async def test_restore_test_refusals(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]], shop: Shop, manifest: Manifest
) -> None:
    unknown = await client.post(
        "/v1/backups/restore-tests", json={"system": "crm"}, headers=auth("backups:run")
    )
    assert unknown.status_code == 404
    denied = await client.post(
        "/v1/backups/restore-tests", json={"system": SYSTEM}, headers=auth("backups:read")
    )
    assert denied.status_code == 403
    missing = await client.get(
        "/v1/backups/restore-tests/00000000-0000-0000-0000-000000000000", headers=auth("backups:read")
    )
    assert missing.status_code == 404
    typo = await client.post("/v1/backups/restore-tests", json={"sytem": SYSTEM}, headers=auth("backups:run"))
    assert typo.status_code in (400, 422)


# --- erasure replay ---------------------------------------------------------------------------


async def test_replay_after_restoring_an_old_dump_erases_the_subjects_again_and_is_idempotent(
    settings: Settings, shop: Shop, manifest: Manifest, store_engine: AsyncEngine
) -> None:
    dump = pg_dump(shop.url, shop.dumps / "shop.dump")
    before = datetime.now(UTC) - timedelta(seconds=1)
    await erase(shop, store_engine, ERASED)
    # Disaster: the target is restored from the dump taken before the erasures.
    await execute(shop.url, "DROP TABLE orders", "DROP TABLE users")
    restore_into(shop.url, dump)
    assert await scalar(shop.url, "SELECT count(*) FROM users WHERE id IN (2, 4)") == 2

    async def replay() -> replay_service.ReplayReport:
        targets = TargetRegistry(settings)
        try:
            async with AsyncSession(store_engine, expire_on_commit=False) as session, session.begin():
                return await replay_service.replay_erasures(
                    session,
                    settings,
                    targets,
                    system=SYSTEM,
                    since=before,
                    actor="test-operator",
                )
        finally:
            await targets.dispose()

    first = await replay()
    assert (first.tombstones, first.subjects_found) == (2, 2)
    assert first.rows_changed == 2 + 4  # users 2 and 4 and their orders
    assert await scalar(shop.url, "SELECT count(*) FROM users WHERE id IN (2, 4)") == 0
    assert await scalar(shop.url, "SELECT count(*) FROM users") == 4
    second = await replay()
    assert (second.tombstones, second.subjects_found, second.rows_changed) == (2, 0, 0)
    assert await scalar(shop.url, "SELECT count(*) FROM users") == 4
    await sequence_now(store_engine)
    async with AsyncSession(store_engine) as session:
        replayed = (
            await session.scalars(
                text("SELECT subject_ref FROM audit_event WHERE action = 'backup.erasure_replayed'")
            )
        ).all()
        summaries = (
            await session.scalars(
                text("SELECT count(*) FROM audit_event WHERE action = 'backup.erasures_replayed'")
            )
        ).one()
    assert sorted(replayed) == refs(*ERASED)
    assert summaries == 2


async def test_replay_only_considers_erasures_since_the_given_time(
    settings: Settings, shop: Shop, manifest: Manifest, store_engine: AsyncEngine
) -> None:
    dump = pg_dump(shop.url, shop.dumps / "shop.dump")
    await erase(shop, store_engine, (2,))
    cutoff = datetime.now(UTC)
    await erase(shop, store_engine, (4,))
    await execute(shop.url, "DROP TABLE orders", "DROP TABLE users")
    restore_into(shop.url, dump)
    targets = TargetRegistry(settings)
    try:
        async with AsyncSession(store_engine, expire_on_commit=False) as session, session.begin():
            report = await replay_service.replay_erasures(
                session,
                settings,
                targets,
                system=SYSTEM,
                since=cutoff,
                actor="test-operator",
            )
    finally:
        await targets.dispose()
    assert (report.tombstones, report.subjects_found) == (1, 1)
    assert await scalar(shop.url, "SELECT count(*) FROM users WHERE id = 2") == 1
    assert await scalar(shop.url, "SELECT count(*) FROM users WHERE id = 4") == 0


# --- CLI --------------------------------------------------------------------------------------


def run_cli(settings: Settings, *args: str) -> Result:
    env = {
        "LETHE_DATABASE_URL": settings.database_url,
        "LETHE_JWT_SECRET": TEST_JWT_SECRET,
        "LETHE_AUDIT_KEY": TEST_AUDIT_KEY,
        "LETHE_AUDIT_CHAIN_KEY": TEST_CHAIN_KEY,
        "LETHE_LOG_LEVEL": "WARNING",
        "LETHE_BACKUP_SOURCES": settings.backup_sources,
    }
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(lethe_group, list(args), env=env, catch_exceptions=False)
    finally:
        get_settings.cache_clear()


async def test_cli_health_exit_code_follows_the_worst_status(settings: Settings, shop: Shop) -> None:
    dump = pg_dump(shop.url, shop.dumps / "shop.dump")
    write_sidecar(dump)
    fresh = await asyncio.to_thread(run_cli, settings, "backups", "health")
    assert fresh.exit_code == 0, fresh.output
    assert "overall: ok" in fresh.output
    age(dump, 2 * 86_400)
    old = await asyncio.to_thread(run_cli, settings, "backups", "health", "--json")
    assert old.exit_code == 2, old.output
    assert json.loads(old.output)["status"] == "critical"


async def test_cli_restore_test_runs_synchronously_and_is_stored(
    settings: Settings, shop: Shop, manifest: Manifest, store_engine: AsyncEngine
) -> None:
    write_sidecar(pg_dump(shop.url, shop.dumps / "shop.dump"))
    await erase(shop, store_engine, (3,))
    result = await asyncio.to_thread(run_cli, settings, "backups", "restore-test", SYSTEM, "--actor", "ops")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert (body["status"], body["resurrected_refs"], body["requested_by"]) == ("passed", refs(3), "ops")
    async with AsyncSession(store_engine) as session:
        stored = await session.scalar(text("SELECT status FROM backup_restore_test"))
    assert stored == "passed"


async def test_cli_replay_erasures_after_a_restore_and_again(
    settings: Settings, shop: Shop, manifest: Manifest, store_engine: AsyncEngine
) -> None:
    dump = pg_dump(shop.url, shop.dumps / "shop.dump")
    since = (await erase(shop, store_engine, ERASED)) - timedelta(seconds=1)
    await execute(shop.url, "DROP TABLE orders", "DROP TABLE users")
    restore_into(shop.url, dump)
    stamp = since.isoformat()
    first = await asyncio.to_thread(run_cli, settings, "backups", "replay-erasures", SYSTEM, "--since", stamp)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["subjects_found"] == 2
    assert await scalar(shop.url, "SELECT count(*) FROM users WHERE id IN (2, 4)") == 0
    second = await asyncio.to_thread(
        run_cli, settings, "backups", "replay-erasures", SYSTEM, "--since", stamp
    )
    assert (json.loads(second.output)["subjects_found"], json.loads(second.output)["rows_changed"]) == (0, 0)
    bad = await asyncio.to_thread(
        run_cli, settings, "backups", "replay-erasures", SYSTEM, "--since", "yesterday"
    )
    assert bad.exit_code == 2


async def test_a_restore_past_its_time_limit_is_stopped_and_leaves_no_scratch_database(
    postgres_server: DatabaseServer, tmp_path: Path
) -> None:
    url = await postgres_server.create_database("lethe_big")
    await execute(
        url,
        "CREATE TABLE users (id integer PRIMARY KEY, email text NOT NULL)",
        "INSERT INTO users SELECT g, md5(g::text) FROM generate_series(1, 1000000) g",
    )
    path = pg_dump(url, tmp_path / "big.dump")
    dump = DumpFile(path=path, size=path.stat().st_size, modified_at=datetime.now(UTC))
    outcome = await restore_test(
        dump,
        postgres_server.admin_url,
        RestoreExpectation(tables=["users"], subject_table="users", key_columns=["id"]),
        tombstone_refs=[],
        reference=key_hasher(TEST_AUDIT_KEY, SYSTEM),
        time_limit=0.5,
    )
    assert outcome.reason == "the restore test did not finish within 0.5s"
    assert not outcome.passed
    assert outcome.dropped
    assert not await database_exists(postgres_server, outcome.database)
    restoring = await scalar(
        postgres_server.admin_url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_restore'",
    )
    assert restoring == 0
