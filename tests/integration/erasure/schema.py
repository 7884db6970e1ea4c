"""A target schema exercising every erasure path, its manifest, seed data and snapshots."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from app.manifest.model import Manifest

metadata = MetaData()
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("email", String(24), nullable=False, unique=True),
    Column("full_name", String(60), nullable=False),
    Column("phone", String(20)),
    Column("country", String(2), nullable=False),
    Column("created_at", DateTime, nullable=False),
)
addresses = Table(
    "addresses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("user_id", Integer, ForeignKey("users.id", name="fk_addresses_user"), nullable=False),
    Column("street", String(80), nullable=False),
)
orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("user_id", Integer, ForeignKey("users.id", name="fk_orders_user"), nullable=False),
    Column("total", Numeric(10, 2), nullable=False),
    Column("delivery_note", String(100)),
)
order_items = Table(
    "order_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("order_id", Integer, ForeignKey("orders.id", name="fk_items_order"), nullable=False),
    Column("sku", String(20), nullable=False),
    Column("gift_message", String(100)),
)
comments = Table(
    "comments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("user_id", Integer, ForeignKey("users.id", name="fk_comments_user"), nullable=False),
    Column("parent_id", Integer, ForeignKey("comments.id", name="fk_comments_parent")),
    Column("body", String(200), nullable=False),
)
messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("sender_id", Integer, ForeignKey("users.id", name="fk_messages_sender"), nullable=False),
    Column("recipient_id", Integer, ForeignKey("users.id", name="fk_messages_recipient"), nullable=False),
    Column("sender_name", String(60), nullable=False),
    Column("recipient_name", String(60), nullable=False),
    Column("body", String(200), nullable=False),
)
groups = Table(
    "groups",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("title", String(40), nullable=False),
)
group_members = Table(
    "group_members",
    metadata,
    Column("group_id", Integer, nullable=False),
    Column("member_id", Integer, nullable=False),
    Column("nickname", String(30)),
    PrimaryKeyConstraint("group_id", "member_id", name="pk_group_members"),
    ForeignKeyConstraint(["group_id"], ["groups.id"], name="fk_members_group"),
    ForeignKeyConstraint(["member_id"], ["users.id"], name="fk_members_user"),
)
device_logs = Table(  # a logical reference: no foreign key constraint
    "device_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("account_ref", Integer, nullable=False),
    Column("ip_address", String(45), nullable=False),
)
TABLES = (users, addresses, orders, order_items, comments, messages, groups, group_members, device_logs)

MANIFEST: dict[str, Any] = {
    "system": "shop",
    "connection": {"env": "LETHE_TARGET_ERASURETEST_URL"},
    "subject": {"table": "users", "key": "id", "identities": {"email": "email", "user_id": "id"}},
    "tables": {
        "users": {
            "strategy": "anonymize",
            "columns": {
                "email": {"category": "user.contact.email"},
                "full_name": {"category": "user.name"},
                "phone": {"category": "user.contact.phone_number", "strategy": "delete"},
                "country": {
                    "category": "user.location.country",
                    "strategy": "retain",
                    "retention": {"legal_basis": "tax law", "duration": "P10Y"},
                },
            },
        },
        "addresses": {"strategy": "delete", "columns": {"street": {"category": "user.contact.address"}}},
        "orders": {
            "strategy": "retain",
            "retention": {"legal_basis": "tax law: invoices kept 10 years", "duration": "P10Y"},
            "columns": {"delivery_note": {"category": "user.content.note", "strategy": "delete"}},
        },
        "order_items": {
            "strategy": "retain",
            "retention": {"legal_basis": "tax law", "duration": "P10Y"},
            "columns": {"gift_message": {"category": "user.content.note", "surrogate": "null"}},
        },
        "comments": {
            "strategy": "delete",
            "link": {"path": [{"from": "user_id", "to": "users"}]},
            "columns": {"body": {"category": "user.content.comment"}},
        },
        "messages": {
            "strategy": "anonymize",
            "links": {
                "sender": {
                    "path": [{"from": "sender_id", "to": "users"}],
                    "columns": ["sender_name", "body"],
                },
                "recipient": {
                    "path": [{"from": "recipient_id", "to": "users"}],
                    "columns": ["recipient_name"],
                },
            },
            "columns": {
                "sender_name": {"category": "user.name"},
                "recipient_name": {"category": "user.name"},
                "body": {"category": "user.content.message"},
            },
        },
        "group_members": {
            "strategy": "delete",
            "link": {"path": [{"from": "member_id", "to": "users"}]},
            "columns": {"nickname": {"category": "user.name"}},
        },
        "device_logs": {
            "strategy": "delete",
            "link": {"path": [{"from": "account_ref", "to": "users", "to_columns": "id"}]},
            "columns": {"ip_address": {"category": "user.device.ip_address"}},
        },
    },
}


def manifest(**table_overrides: dict[str, Any]) -> Manifest:
    """The test manifest, with some tables' specs updated."""
    document = msgspec.json.decode(msgspec.json.encode(MANIFEST))
    for table, changes in table_overrides.items():
        document["tables"][table].update(changes)
    return msgspec.convert(document, Manifest)


def seed_rows(people: int) -> dict[str, list[dict[str, Any]]]:
    """Rows for ``people`` users; every person has data in every table."""
    rows: dict[str, list[dict[str, Any]]] = {t.name: [] for t in TABLES}
    rows["groups"] = [{"id": 1, "title": "runners"}, {"id": 2, "title": "readers"}]
    for p in range(1, people + 1):
        rows["users"].append(
            {
                "id": p,
                "email": f"person{p}@example.com",
                "full_name": f"Person Number {p}",
                "phone": f"+4670{p:07d}",
                "country": "SE",
                "created_at": datetime(2024, 1, 1 + p % 28, tzinfo=UTC).replace(tzinfo=None),
            }
        )
        rows["addresses"].append({"id": p, "user_id": p, "street": f"{p} Main Street"})
        for o in range(2):
            order_id = p * 10 + o
            rows["orders"].append(
                {"id": order_id, "user_id": p, "total": Decimal("19.90"), "delivery_note": f"ring {p}"}
            )
            rows["order_items"].append(
                {"id": order_id * 10, "order_id": order_id, "sku": f"SKU{o}", "gift_message": f"hi {p}"}
            )
        rows["comments"].append({"id": p * 10, "user_id": p, "parent_id": None, "body": f"comment by {p}"})
        rows["comments"].append(
            {"id": p * 10 + 1, "user_id": p, "parent_id": p * 10, "body": f"self reply {p}"}
        )
        other = p % people + 1
        rows["messages"].append(
            {
                "id": p,
                "sender_id": p,
                "recipient_id": other,
                "sender_name": f"Person Number {p}",
                "recipient_name": f"Person Number {other}",
                "body": f"hello from {p}",
            }
        )
        rows["group_members"].append({"group_id": 1 + p % 2, "member_id": p, "nickname": f"nick{p}"})
        rows["device_logs"].append({"id": p, "account_ref": p, "ip_address": f"10.0.0.{p % 250}"})
    return rows


async def create_target(engine: AsyncEngine, people: int) -> None:
    """Create the schema and insert the seed rows."""
    rows = seed_rows(people)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        for table in TABLES:
            if rows[table.name]:
                await conn.execute(insert(table), rows[table.name])


async def snapshot(engine: AsyncEngine) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """Every row of every table, by primary key."""
    result: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {}
    async with engine.connect() as conn:
        for table in TABLES:
            key = [c.name for c in table.primary_key.columns]
            rows = (await conn.execute(select(table))).mappings().all()
            result[table.name] = {tuple(r[k] for k in key): tuple(r.values()) for r in rows}
    return result
