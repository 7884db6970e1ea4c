"""A "lab" target with one table per link kind, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings
from app.engine.targets import TargetRegistry
from app.manifest.model import Connection
from app.manifest.schema import SchemaInfo
from tests.servers import DatabaseServer

LAB_VARIABLE = "LAB_TARGET_URL"


def lab_metadata() -> MetaData:
    """Tables covering every link kind; foreign keys carry explicit names."""
    metadata = MetaData()
    Table(
        "users",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("email", String(120), nullable=False),
        Column("tenant_id", Integer),
        UniqueConstraint("email", name="uq_users_email"),
    )
    Table(
        "orders",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, ForeignKey("users.id", name="fk_orders_user"), nullable=False),
        Column("note", String(200)),
    )
    Table(
        "order_items",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("order_id", Integer, ForeignKey("orders.id", name="fk_order_items_order"), nullable=False),
        Column("sku", String(32), nullable=False),
    )
    Table(
        "tickets",
        metadata,
        Column("tenant_id", Integer, primary_key=True, autoincrement=False),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_ref", Integer, nullable=False),  # logical reference: no constraint
        Column("subject", String(100)),
    )
    Table(
        "ticket_notes",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("tenant_id", Integer, nullable=False),
        Column("ticket_id", Integer, nullable=False),
        Column("body", String(200)),
        ForeignKeyConstraint(
            ["tenant_id", "ticket_id"], ["tickets.tenant_id", "tickets.id"], name="fk_ticket_notes_ticket"
        ),
    )
    Table(
        "folders",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("owner_id", Integer, ForeignKey("users.id", name="fk_folders_owner")),
        Column("parent_id", Integer, ForeignKey("folders.id", name="fk_folders_parent")),
        Column("title", String(100)),
    )
    Table(
        "teams",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("title", String(100)),
    )
    Table(
        "team_members",
        metadata,
        Column(
            "team_id",
            Integer,
            ForeignKey("teams.id", name="fk_team_members_team"),
            primary_key=True,
            autoincrement=False,
        ),
        Column(
            "user_id",
            Integer,
            ForeignKey("users.id", name="fk_team_members_user"),
            primary_key=True,
            autoincrement=False,
        ),
    )
    Table(
        "messages",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("sender_id", Integer, ForeignKey("users.id", name="fk_messages_sender")),
        Column("recipient_id", Integer, ForeignKey("users.id", name="fk_messages_recipient")),
        Column("sender_name", String(100)),
        Column("recipient_name", String(100)),
        Column("body", Text),
    )
    Table(
        "profiles",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, ForeignKey("users.id", name="fk_profiles_user"), nullable=False),
        Column("code", String(8), nullable=False),
        Column("nick", String(10), nullable=False),
        Column("motto", String(5)),
        UniqueConstraint("code", name="uq_profiles_code"),
    )
    Table(  # authors and posts reference each other: a foreign-key cycle
        "authors",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, ForeignKey("users.id", name="fk_authors_user")),
        Column(
            "pinned_post_id", Integer, ForeignKey("posts.id", name="fk_authors_pinned_post", use_alter=True)
        ),
    )
    Table(
        "posts",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("author_id", Integer, ForeignKey("authors.id", name="fk_posts_author")),
    )
    Table(
        "audit_trail",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, ForeignKey("users.id", name="fk_audit_trail_user")),
        Column("action", String(40)),
    )
    return metadata


LAB_ROWS: dict[str, list[dict[str, Any]]] = {
    "users": [
        {"id": 1, "email": "a@example.com", "tenant_id": 1},
        {"id": 2, "email": "b@example.com", "tenant_id": 1},
    ],
    "orders": [{"id": 10, "user_id": 1}, {"id": 11, "user_id": 1}, {"id": 20, "user_id": 2}],
    "order_items": [
        {"id": 100, "order_id": 10, "sku": "A"},
        {"id": 101, "order_id": 11, "sku": "B"},
        {"id": 200, "order_id": 20, "sku": "C"},
    ],
    "tickets": [{"tenant_id": 1, "id": 1, "user_ref": 1}, {"tenant_id": 2, "id": 1, "user_ref": 2}],
    "ticket_notes": [{"id": 1, "tenant_id": 1, "ticket_id": 1}, {"id": 2, "tenant_id": 2, "ticket_id": 1}],
    "folders": [
        {"id": 1, "owner_id": 1, "parent_id": None},
        {"id": 2, "owner_id": None, "parent_id": 1},
        {"id": 3, "owner_id": 2, "parent_id": None},
        {"id": 4, "owner_id": None, "parent_id": 3},
    ],
    "teams": [{"id": 1, "title": "red"}, {"id": 2, "title": "blue"}, {"id": 3, "title": "green"}],
    "team_members": [
        {"team_id": 1, "user_id": 1},
        {"team_id": 2, "user_id": 1},
        {"team_id": 2, "user_id": 2},
        {"team_id": 3, "user_id": 2},
    ],
    "messages": [
        {"id": 1, "sender_id": 1, "recipient_id": 2},
        {"id": 2, "sender_id": 2, "recipient_id": 1},
        {"id": 3, "sender_id": 2, "recipient_id": 2},
    ],
    "profiles": [{"id": 1, "user_id": 1, "code": "P1", "nick": "ada"}],
    "audit_trail": [{"id": 1, "user_id": 1, "action": "login"}],
}


@dataclass
class LabTarget:
    """A populated lab database: its URL, an engine, its reflected schema and a registry."""

    kind: str
    url: str
    engine: AsyncEngine
    schema: SchemaInfo
    targets: TargetRegistry

    @property
    def connection(self) -> Connection:
        """The manifest connection reference that reaches this target."""
        return Connection(env=LAB_VARIABLE)


async def _build(url: str) -> AsyncEngine:
    engine = create_async_engine(url)
    metadata = lab_metadata()
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        for table in metadata.sorted_tables:
            rows = LAB_ROWS.get(table.name)
            if rows:
                await connection.execute(
                    insert(table), [{c.name: None for c in table.columns} | r for r in rows]
                )
    return engine


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mysql"])
async def lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LabTarget]:
    """The lab target on each database kind (module-scoped: tests only read it)."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("lab") / "lab.db"
        url = f"sqlite+aiosqlite:///{path}"
    else:
        fixture = "postgres_server" if request.param == "postgresql" else "mysql_server"
        server: DatabaseServer = request.getfixturevalue(fixture)
        url = await server.create_database("lethe_lab")
    engine = await _build(url)
    targets = TargetRegistry(Settings(), {LAB_VARIABLE: url})
    schema = await targets.reflect("lab", Connection(env=LAB_VARIABLE))
    yield LabTarget(request.param, url, engine, schema, targets)
    await targets.dispose()
    await engine.dispose()
