"""A small CRM target (multi-hop and many-to-many links) on any dialect, its manifest, and helpers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    column,
    insert,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings
from app.domain.requests.jobs import RequestWorker
from app.engine.targets import TargetRegistry

__all__ = (
    "SUBJECT_EMAIL",
    "SUBJECT_ID",
    "TARGET_ENV",
    "create_crm",
    "crm_manifest",
    "drain",
    "hand_written_export",
    "register_crm",
    "target_url",
)

TARGET_ENV = "LETHE_TARGET_CRM_URL"
SUBJECT_ID = 1
SUBJECT_EMAIL = "ada@example.com"

metadata = MetaData()
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("email", String(120), nullable=False, unique=True),
    Column("full_name", String(40), nullable=False),
    Column("birth_date", Date),
    Column("created_at", DateTime, nullable=False),
)
orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("user_id", Integer, ForeignKey("users.id", name="fk_orders_user"), nullable=False),
    Column("total_cents", Integer, nullable=False),
    Column("note", String(200)),
)
order_items = Table(
    "order_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("order_id", Integer, ForeignKey("orders.id", name="fk_order_items_order"), nullable=False),
    Column("sku", String(32), nullable=False),
    Column("quantity", Integer, nullable=False),
)
teams = Table(
    "teams",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("title", String(80), nullable=False),
)
team_members = Table(
    "team_members",
    metadata,
    Column("team_id", Integer, ForeignKey("teams.id", name="fk_team_members_team"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", name="fk_team_members_user"), primary_key=True),
    Column("role", String(20), nullable=False),
)

HAND_WRITTEN = {
    "users": "SELECT * FROM users WHERE email = :email ORDER BY id",
    "orders": (
        "SELECT o.* FROM orders o JOIN users u ON u.id = o.user_id WHERE u.email = :email ORDER BY o.id"
    ),
    "order_items": (
        "SELECT i.* FROM order_items i JOIN orders o ON o.id = i.order_id JOIN users u ON u.id = o.user_id "
        "WHERE u.email = :email ORDER BY i.id"
    ),
    "teams": (
        "SELECT t.* FROM teams t WHERE t.id IN (SELECT m.team_id FROM team_members m JOIN users u "
        "ON u.id = m.user_id WHERE u.email = :email) ORDER BY t.id"
    ),
    "team_members": (
        "SELECT m.* FROM team_members m JOIN users u ON u.id = m.user_id WHERE u.email = :email "
        "ORDER BY m.team_id, m.user_id"
    ),
}
"""What the subject owns, written by hand: the export must return exactly these rows."""


def crm_manifest() -> dict[str, Any]:
    """The manifest: ``order_items`` is two hops away, ``teams`` is reached through a join table."""
    return {
        "system": "crm",
        "connection": {"env": TARGET_ENV},
        "subject": {"table": "users", "key": "id", "identities": {"email": "email", "user_id": "id"}},
        "tables": {
            "users": {
                "purpose": "customer account",
                "legal_basis": "contract",
                "recipients": ["support desk"],
                "columns": {
                    "email": {"category": "user.contact.email", "surrogate": "email", "rectifiable": True},
                    "full_name": {"category": "user.name", "rectifiable": True},
                    "birth_date": {"category": "user.demographic.date_of_birth", "rectifiable": True},
                },
            },
            "orders": {
                "purpose": "invoicing",
                "legal_basis": "legal obligation",
                "strategy": "retain",
                "retention": {"legal_basis": "tax law", "duration": "P10Y"},
                "link": {"path": [{"from": "user_id", "to": "users"}]},
                "columns": {
                    "note": {"category": "user.content.note", "strategy": "delete", "rectifiable": True}
                },
            },
            "order_items": {
                "purpose": "invoicing",
                "legal_basis": "legal obligation",
                "strategy": "retain",
                "retention": {"legal_basis": "tax law", "duration": "P10Y"},
                "link": {"path": [{"from": "order_id", "to": "orders"}, {"from": "user_id", "to": "users"}]},
            },
            "team_members": {
                "purpose": "collaboration",
                "legal_basis": "contract",
                "strategy": "anonymize",
                "link": {"path": [{"from": "user_id", "to": "users"}]},
                "columns": {"role": {"category": "user.job_title"}},
            },
            "teams": {
                "purpose": "collaboration",
                "legal_basis": "legitimate interest",
                "strategy": "retain",
                "retention": {"legal_basis": "shared team records", "duration": "P1Y"},
                "link": {
                    "path": [
                        {"from": "id", "to": "team_members", "to_columns": "team_id"},
                        {"from": "user_id", "to": "users"},
                    ]
                },
            },
        },
    }


def _rows(people: int, orders_per_person: int) -> dict[str, list[dict[str, Any]]]:
    base = datetime(2025, 3, 1, 10, 30, 15)  # noqa: DTZ001 - a naive TIMESTAMP column
    data: dict[str, list[dict[str, Any]]] = {t: [] for t in metadata.tables}
    data["teams"] = [{"id": t, "title": f"Team {t}"} for t in range(1, 5)]
    order_id = item_id = 0
    for person in range(1, people + 1):
        email = SUBJECT_EMAIL if person == SUBJECT_ID else f"person{person}@example.com"
        data["users"].append(
            {
                "id": person,
                "email": email,
                "full_name": f"Person {person}",
                "birth_date": date(1980, 1, 1) + timedelta(days=person),
                "created_at": base + timedelta(hours=person),
            }
        )
        for team in (1 + person % 4, 1 + (person + 1) % 4):
            data["team_members"].append({"team_id": team, "user_id": person, "role": f"role-{person}"})
        for index in range(orders_per_person):
            order_id += 1
            note = None if index % 3 == 0 else f'note {order_id}, "quoted"\nline'
            data["orders"].append(
                {"id": order_id, "user_id": person, "total_cents": 100 * order_id, "note": note}
            )
            for _ in range(2):
                item_id += 1
                data["order_items"].append(
                    {
                        "id": item_id,
                        "order_id": order_id,
                        "sku": f"SKU-{item_id}",
                        "quantity": 1 + item_id % 3,
                    }
                )
    return data


async def create_crm(url: str, *, people: int = 5, orders_per_person: int = 3) -> None:
    """Create the CRM tables at ``url`` and fill them (the subject is person 1)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
            data = _rows(people, orders_per_person)
            for table in metadata.sorted_tables:
                rows = data[table.name]
                for start in range(0, len(rows), 5000):
                    await connection.execute(insert(table), rows[start : start + 5000])
    finally:
        await engine.dispose()


async def target_url(kind: str, tmp_path: Path, request: Any) -> str:
    """A fresh empty target database of ``kind`` (sqlite, postgresql, mysql)."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    server = request.getfixturevalue("postgres_server" if kind == "postgresql" else "mysql_server")
    return str(await server.create_database("lethe_crm"))


async def register_crm(client: AsyncTestClient[Litestar], headers: dict[str, str]) -> None:
    """Register the CRM manifest through the API."""
    response = await client.post(
        "/v1/manifests",
        content=msgspec.json.encode(crm_manifest()),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status_code in (200, 201), response.text


async def drain(settings: Settings, store_engine: AsyncEngine) -> int:
    """Run one worker in-process until no request is ready; returns how many it processed."""
    targets = TargetRegistry(settings)
    worker = RequestWorker(settings, store_engine, targets, "test")
    processed = 0
    try:
        while await worker.run_one():
            processed += 1
    finally:
        await targets.dispose()
    return processed


async def hand_written_export(url: str, email: str) -> dict[str, list[dict[str, Any]]]:
    """The subject's rows per table by hand-written SQL, JSON-normalised like the export."""
    engine = create_async_engine(url)
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        async with engine.connect() as connection:
            for name, sql in HAND_WRITTEN.items():
                table = metadata.tables[name]
                typed = text(sql).columns(*(column(c.name, c.type) for c in table.columns))
                result = await connection.execute(typed, {"email": email})
                out[name] = [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()
    return msgspec.json.decode(msgspec.json.encode(out))


def utc(*args: int) -> datetime:
    """A UTC datetime."""
    return datetime(*args, tzinfo=UTC)
