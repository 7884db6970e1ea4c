"""Alembic environment for the service store (async; also driven in-process by the app)."""

from __future__ import annotations

import asyncio

from advanced_alchemy.base import metadata_registry
from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import app.db  # noqa: F401  (registers every model on the metadata)
from app.db.store import migration_connection

config = context.config
target_metadata = metadata_registry.get(None)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=True,
    )


def _database_url() -> str:
    url = config.attributes.get("database_url") or getattr(config, "db_url", None)
    if url:
        return str(url)
    from app.config import get_settings

    return get_settings().database_url


def run_migrations_offline() -> None:
    """Emit SQL for review instead of executing it."""
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    """Run against a live database, with the connection the caller passed or a new engine."""
    engine = getattr(config, "engine", None) or create_async_engine(_database_url(), poolclass=pool.NullPool)
    async with migration_connection(engine) as connection:
        await connection.run_sync(_run_on)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif (connection := config.attributes.get("connection")) is not None:
    _run_on(connection)
else:
    asyncio.run(run_migrations_online())
