"""Target databases for erasure tests: one fresh database per test on SQLite, PostgreSQL, MariaDB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.engine.targets import TargetRegistry
from tests.conftest import make_settings
from tests.integration.erasure import schema


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
async def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The async URL of an empty target database of each kind."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'target.db'}"
    fixture = "postgres_server" if request.param == "postgresql" else "mysql_server"
    server = request.getfixturevalue(fixture)
    url: str = await server.create_database("lethe_target")
    return url


@pytest.fixture
async def target_engine(target_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the empty target database."""
    engine = create_async_engine(target_url)
    yield engine
    await engine.dispose()


@asynccontextmanager
async def seeded_shop(target_url: str, tmp_path: Path, people: int) -> AsyncIterator[AsyncEngine]:
    """The test schema seeded with ``people``, through a registry (SQLite gets foreign keys)."""
    registry = TargetRegistry(make_settings(tmp_path), environ={"LETHE_TARGET_ERASURETEST_URL": target_url})
    if target_url.startswith("sqlite"):
        (tmp_path / "target.db").touch()
    try:
        engine = await registry.engine("shop", schema.manifest().connection)
        await schema.create_target(engine, people)
        yield engine
    finally:
        await registry.dispose()
