"""Chat targets on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.integration.chat import schema


async def chat_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh chat target database of ``kind``, seeded."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    else:
        server = request.getfixturevalue("postgres_server" if kind == "postgresql" else "mysql_server")
        url = str(await server.create_database("lethe_chat"))
    engine = create_async_engine(url)
    try:
        await schema.create_target(engine)
    finally:
        await engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
async def chat(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The seeded chat target on SQLite and PostgreSQL, named by the manifest's variable."""
    url = await chat_url(request.param, tmp_path, request)
    monkeypatch.setenv(schema.TARGET_ENV, url)
    return url


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
async def chat_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on the seeded chat target, on all three databases."""
    engine = create_async_engine(await chat_url(request.param, tmp_path, request))
    yield engine
    await engine.dispose()
