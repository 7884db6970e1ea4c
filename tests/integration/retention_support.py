"""A small target for retention tests: sessions, orders referenced by order items, on any dialect."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from app.domain.manifests.services import ManifestService
from app.manifest.loading import load_manifest
from app.manifest.model import Manifest
from tests.conftest import store_engine_for

__all__ = (
    "NOW",
    "SESSIONS",
    "SHOP_ENV",
    "build_target",
    "due_sessions",
    "engine_for",
    "make_target",
    "register_shop",
    "shop_manifest",
    "snapshot",
    "target_metadata",
    "target_rows",
)

NOW = datetime.now(UTC).replace(microsecond=0)
SESSIONS = 240
"""Rows per table; ages are spread around :data:`NOW` (the test session's start)."""


def target_metadata() -> MetaData:
    """Tables: users <- sessions (ON DELETE NO ACTION into users, nothing into sessions), orders
    <- order_items (NO ACTION: orders cannot be deleted), events with a composite key."""
    metadata = MetaData()
    Table(
        "users",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("email", String(120), nullable=False, unique=True),
    )
    Table(
        "sessions",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("ip_address", String(45)),
        Column("expires_at", DateTime(), nullable=False),
        Column("deleted_at", DateTime()),
    )
    Table(
        "orders",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
        Column("placed_at", DateTime(), nullable=False),
        Column("contact_email", String(120), nullable=False, unique=True),
        Column("delivery_note", String(200)),
        Column("total_cents", Integer, nullable=False),
    )
    Table(
        "order_items",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("order_id", Integer, ForeignKey("orders.id"), nullable=False),
        Column("sku", String(32), nullable=False),
    )
    Table(
        "events",
        metadata,
        Column("tenant", String(16), primary_key=True),
        Column("seq", Integer, primary_key=True, autoincrement=False),
        Column("created_at", DateTime(), nullable=False),
    )
    return metadata


def target_rows() -> dict[str, list[dict[str, Any]]]:
    base = NOW.replace(tzinfo=None) - timedelta(days=40)
    users = [{"id": i, "email": f"user{i}@example.com"} for i in range(1, 11)]
    sessions = [
        {
            "id": i,
            "user_id": 1 + i % 10,
            "kind": ("web", "api", "mobile")[i % 3],
            "ip_address": f"192.0.2.{i % 250}",
            "expires_at": base + timedelta(days=60) - timedelta(days=i * 2 % 97, hours=i % 24),
            "deleted_at": None,
        }
        for i in range(1, SESSIONS + 1)
    ]
    orders = [
        {
            "id": i,
            "user_id": 1 + i % 10,
            "placed_at": base - timedelta(days=(i * 37) % 1500),
            "contact_email": f"buyer{i}@example.com",
            "delivery_note": "leave at the door" if i % 2 else None,
            "total_cents": 100 * i,
        }
        for i in range(1, SESSIONS + 1)
    ]
    items = [{"id": i, "order_id": i, "sku": f"SKU-{i}"} for i in range(1, SESSIONS + 1)]
    events = [
        {"tenant": ("a", "b")[i % 2], "seq": i, "created_at": base - timedelta(days=i % 90)}
        for i in range(1, SESSIONS + 1)
    ]
    return {"users": users, "sessions": sessions, "orders": orders, "order_items": items, "events": events}


async def build_target(engine: AsyncEngine) -> None:
    """Create the tables and fill them with the same rows on every dialect."""
    metadata = target_metadata()
    async with engine.begin() as connection:
        await connection.run_sync(metadata.drop_all)
        await connection.run_sync(metadata.create_all)
        for name, rows in target_rows().items():
            await connection.execute(insert(metadata.tables[name]), rows)


async def make_target(request: pytest.FixtureRequest, tmp_path: Path, kind: str, name: str = "target") -> str:
    """A fresh, filled target database URL of ``kind`` (sqlite, postgresql, mysql)."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / name}.db"
    else:
        server = request.getfixturevalue("postgres_server" if kind == "postgresql" else "mysql_server")
        url = await server.create_database("lethe_retention")
    engine = create_async_engine(url)
    try:
        await build_target(engine)
    finally:
        await engine.dispose()
    return url


async def snapshot(engine: AsyncEngine, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table`` ordered by its key, for comparing end states."""
    metadata = target_metadata()
    target = metadata.tables[table]
    async with engine.connect() as connection:
        rows = (await connection.execute(select(target).order_by(*target.primary_key.columns))).all()
    return [tuple(row) for row in rows]


@asynccontextmanager
async def engine_for(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine that is disposed afterwards."""
    engine = create_async_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


SHOP_ENV = "LETHE_TARGET_RETENTIONSHOP_URL"
"""The variable the test manifest names for its connection."""


def shop_manifest(contact_surrogate: str = "email") -> Manifest:
    """The test target's manifest: two scheduled/on-demand policies like the demo's, plus a soft one."""
    document = {
        "system": "shop",
        "connection": {"env": SHOP_ENV},
        "subject": {"table": "users", "key": "id", "identities": {"email": "email"}},
        "tables": {
            "users": {"columns": {"email": {"category": "user.contact.email"}}},
            "sessions": {
                "strategy": "delete",
                "columns": {"ip_address": {"category": "user.device.ip_address"}},
            },
            "orders": {
                "columns": {
                    "contact_email": {"category": "user.contact.email", "surrogate": contact_surrogate},
                    "delivery_note": {"category": "user.contact.note", "strategy": "delete"},
                }
            },
        },
        "retention_policies": [
            {
                "name": "expired-sessions",
                "table": "sessions",
                "age_column": "expires_at",
                "older_than": "P30D",
                "action": "delete",
                "batch_size": 7,
                "schedule": "P1D",
            },
            {
                "name": "old-orders",
                "table": "orders",
                "age_column": "placed_at",
                "older_than": "P2Y",
                "action": "anonymize",
                "batch_size": 25,
            },
            {
                "name": "soft-sessions",
                "table": "sessions",
                "age_column": "expires_at",
                "older_than": "P30D",
                "action": "soft_delete",
                "soft_delete_column": "deleted_at",
                "batch_size": 9,
            },
        ],
    }
    return load_manifest(json.dumps(document), "json")


async def register_shop(store_url: str, manifest: Manifest | None = None) -> None:
    """Store the test manifest as the latest version of ``shop`` (no live validation)."""
    engine = store_engine_for(store_url)
    try:
        async with AsyncSession(engine) as session:
            await ManifestService(session=session).store(manifest or shop_manifest(), "test")
            await session.commit()
    finally:
        await engine.dispose()


def due_sessions(cutoff: datetime) -> set[int]:
    """Ids of sessions whose ``expires_at`` is before ``cutoff``."""
    naive = cutoff.astimezone(UTC).replace(tzinfo=None)
    return {row["id"] for row in target_rows()["sessions"] if row["expires_at"] < naive}
