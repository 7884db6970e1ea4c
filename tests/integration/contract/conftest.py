"""A live Lethe on loopback for the contract tests (schemathesis, the generated client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.store import upgrade_store
from tests.integration.contract.live import LiveServer, serve


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Lethe with workers on, a migrated SQLite store and a 30-person demo shop."""
    with serve(tmp_path_factory.mktemp("live")) as server:
        yield server


@pytest.fixture
async def store_url(tmp_path: Path) -> str:
    """The contract does not depend on the store's dialect: SQLite only, migrated to head."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    engine = create_async_engine(url)
    try:
        await upgrade_store(engine)
    finally:
        await engine.dispose()
    return url
