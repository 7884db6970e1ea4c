"""Target connections: lazy pooled engines, timeouts, and TargetUnavailable naming the system."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from app.engine.targets import TargetRegistry, resolve_url
from app.lib.errors import TargetUnavailable
from app.manifest.model import Connection
from tests.conftest import make_settings
from tests.servers import DatabaseServer

URL = Connection(env="TARGET_URL")


async def test_sqlite_engine_is_lazy_shared_and_enforces_foreign_keys(tmp_path: Path) -> None:
    database = tmp_path / "t.db"
    database.touch()
    env = {"TARGET_URL": f"sqlite:///{database}"}
    targets = TargetRegistry(make_settings(tmp_path), env)
    first = await targets.engine("shop", URL)
    assert await targets.engine("shop", URL) is first
    async with targets.connect("shop", URL) as connection:
        assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    env["TARGET_URL"] = f"sqlite:///{tmp_path / 't.db'}?mode=rw"
    assert await targets.engine("shop", URL) is not first  # the URL changed: a new engine
    await targets.dispose()


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
async def test_server_targets_get_a_statement_timeout(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: DatabaseServer = request.getfixturevalue(
        "postgres_server" if kind == "postgresql" else "mysql_server"
    )
    url = await server.create_database("lethe_target")
    settings = make_settings(tmp_path, target_statement_timeout_seconds="1.5")
    targets = TargetRegistry(settings, {"TARGET_URL": url})
    async with targets.connect("crm", URL) as connection:
        if kind == "postgresql":
            assert (await connection.execute(text("SHOW statement_timeout"))).scalar() == "1500ms"
        else:
            assert float((await connection.execute(text("SELECT @@max_statement_time"))).scalar()) == 1.5
    await targets.dispose()


async def test_unreachable_target_is_unavailable_quickly(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, target_connect_timeout_seconds="1")
    for url in (
        "postgresql://lethe@127.0.0.1:9/crm",
        "mysql://lethe@127.0.0.1:9/crm",
        "postgresql://lethe@10.255.255.1:5432/crm",
    ):
        targets = TargetRegistry(settings, {"TARGET_URL": url})
        started = time.monotonic()
        with pytest.raises(TargetUnavailable, match="target database of system 'crm' is unavailable"):
            await targets.reflect("crm", URL)
        assert time.monotonic() - started < 5
        await targets.dispose()


def test_connection_reference_problems_name_the_source_not_the_url(tmp_path: Path) -> None:
    with pytest.raises(TargetUnavailable, match="environment variable TARGET_URL is not set"):
        resolve_url("crm", URL, {})
    with pytest.raises(TargetUnavailable, match="cannot read"):
        resolve_url("crm", Connection(file=str(tmp_path / "missing")), {})
    secret = tmp_path / "url"
    secret.write_text("oracle://scott:tiger@db/orcl\n")
    with pytest.raises(TargetUnavailable) as caught:
        resolve_url("crm", Connection(file=str(secret)), {})
    assert "tiger" not in caught.value.detail
    secret.write_text("postgresql://u:p@db/crm\n")
    assert resolve_url("crm", Connection(file=str(secret)), {}).drivername == "postgresql+asyncpg"
