"""The service store: migrations build the schema, and models never drift from them."""

from __future__ import annotations

from typing import Any

from advanced_alchemy.base import metadata_registry
from advanced_alchemy.types import GUID
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import app.db  # noqa: F401  (registers every model)
from app.db.store import current_revision, head_revision


def _compare_type(_ctx: Any, _reflected_col: Any, _col: Any, reflected: Any, declared: Any) -> bool | None:
    """SQLite reflects advanced-alchemy's GUID (BINARY(16)) as NUMERIC: not a difference."""
    if isinstance(declared, GUID) and type(reflected).__name__ in {"NUMERIC", "BINARY"}:
        return False
    return None  # alembic's own comparison


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": _compare_type})
    return list(compare_metadata(context, metadata_registry.get(None)))


async def test_store_is_at_the_shipped_head(store_engine: AsyncEngine) -> None:
    assert await current_revision(store_engine) == head_revision()


async def test_models_and_migrations_agree(store_engine: AsyncEngine) -> None:
    async with store_engine.connect() as connection:
        diff = await connection.run_sync(_diff)
    assert diff == [], f"models and migrations differ: {diff}"
