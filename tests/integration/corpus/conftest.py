"""Corpus tests keep the service store on SQLite: the target databases are what they exercise."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.store import upgrade_store


@pytest.fixture
async def store_url(tmp_path: Path) -> str:
    """A migrated SQLite service store (the shared fixture also runs PostgreSQL stores)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    engine = create_async_engine(url)
    try:
        await upgrade_store(engine)
    finally:
        await engine.dispose()
    return url
