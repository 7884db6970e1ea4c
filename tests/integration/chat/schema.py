"""A chat application's schema with no foreign-key constraints, its manifest, seed data, snapshots.

References are logical only (``author_id``, ``CreatorId``-style names): posts with replies across
users, reactions, direct channels shared by two users, access tokens, and audits whose free text
and JSON details name people by e-mail and handle.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

TARGET_ENV = "LETHE_TARGET_CHAT_URL"
SUBJECT = {"id": 1, "email": "ada@example.com", "username": "ada"}

metadata = MetaData()
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("username", String(40), nullable=False, unique=True),
    Column("email", String(120), nullable=False, unique=True),
    Column("first_name", String(60)),
    Column("last_name", String(60)),
    Column("password_hash", String(100), nullable=False),
    Column("totp_secret", String(64)),
    Column("external_id", Uuid),
    Column("settings", JSON().with_variant(JSONB, "postgresql")),
    Column("last_login_ip", String(45)),
    Column("position", String(80)),
)
posts = Table(
    "posts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("CreatorId", Integer, nullable=False),
    Column("reply_to_id", Integer),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
)
reactions = Table(
    "reactions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("post_id", Integer, nullable=False),
    Column("UserId", Integer, nullable=False),
    Column("emoji", String(16), nullable=False),
)
direct_channels = Table(
    "direct_channels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("owner_id", Integer, nullable=False),
    Column("member_id", Integer, nullable=False),
    Column("owner_alias", String(40)),
    Column("member_alias", String(40)),
)
access_tokens = Table(
    "access_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("user_id", Integer, nullable=False),
    Column("token", String(64), nullable=False),
    Column("label", String(40)),
)
audits = Table(
    "audits",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("actor_id", Integer, nullable=False),
    Column("action", String(40), nullable=False),
    Column("note", String(200)),
    Column("details", JSON().with_variant(JSONB, "postgresql")),
)
TABLES = (users, posts, reactions, direct_channels, access_tokens, audits)
LOGICAL = {"logical": True, "reason": "the application keeps references without constraints"}

MANIFEST: dict[str, Any] = {
    "system": "chat",
    "connection": {"env": TARGET_ENV},
    "subject": {
        "table": "users",
        "key": "id",
        "identities": {"email": "email", "username": "username", "user_id": "id"},
    },
    "tables": {
        "users": {
            "purpose": "chat account",
            "legal_basis": "contract",
            "strategy": "anonymize",
            "columns": {
                "email": {"category": "user.contact.email", "surrogate": "email"},
                "username": {"category": "user.account.username", "surrogate": "unique"},
                "first_name": {"category": "user.name", "strategy": "delete"},
                "last_name": {"category": "user.name", "strategy": "delete"},
                "password_hash": {
                    "category": "user.authorization.credentials",
                    "surrogate": "redacted",
                    "export": False,
                    "export_reason": "password hash: disclosure would help an attacker",
                },
                "totp_secret": {
                    "category": "user.authorization.credentials",
                    "strategy": "delete",
                    "export": False,
                    "export_reason": "MFA seed: disclosure defeats the second factor",
                },
                "external_id": {"category": "user.unique_id", "strategy": "delete"},
                "settings": {"category": "user.account.settings", "strategy": "delete"},
                "last_login_ip": {"category": "user.device.ip_address", "strategy": "delete"},
                "position": {"category": "user.job_title", "strategy": "delete"},
            },
        },
        "posts": {
            "purpose": "chat history",
            "legal_basis": "contract",
            "strategy": "anonymize",
            "link": {"path": [{"from": "CreatorId", "to": "users", **LOGICAL}]},
            "columns": {"body": {"category": "user.content", "scrub": ["email", "username"]}},
        },
        "reactions": {
            "strategy": "delete",
            "link": {"path": [{"from": "UserId", "to": "users", **LOGICAL}]},
        },
        "direct_channels": {
            "strategy": "anonymize",
            "links": {
                "owner": {
                    "path": [{"from": "owner_id", "to": "users", **LOGICAL}],
                    "columns": ["owner_alias"],
                },
                "member": {
                    "path": [{"from": "member_id", "to": "users", **LOGICAL}],
                    "columns": ["member_alias"],
                },
            },
            "columns": {
                "owner_alias": {"category": "user.name", "strategy": "delete"},
                "member_alias": {"category": "user.name", "strategy": "delete"},
            },
        },
        "access_tokens": {
            "strategy": "delete",
            "link": {"path": [{"from": "user_id", "to": "users", **LOGICAL}]},
            "columns": {
                "token": {
                    "category": "user.authorization.credentials",
                    "export": False,
                    "export_reason": "a live personal access token",
                }
            },
        },
        "audits": {
            "purpose": "security log",
            "legal_basis": "legitimate interest",
            "strategy": "retain",
            "retention": {"legal_basis": "security logging", "duration": "P1Y"},
            "link": {"path": [{"from": "actor_id", "to": "users", **LOGICAL}]},
            "columns": {
                "note": {"category": "user.content", "strategy": "retain", "scrub": ["email", "username"]},
                "details": {"category": "user.content", "strategy": "retain", "scrub": ["email"]},
            },
        },
    },
}

MENTIONS = (
    "thanks @ada, see you",
    "mail Ada@Example.COM or ada@example.com.",
    "@ada: ping ada@example.com, ada!",
)
"""Text by others that mentions the subject (case variants of the e-mail included)."""
NEAR_MISSES = (
    "adam and adalbert said hi to bob.ada@example.com",
    "ada.lovelace wrote a note; mail ada@example.community or x-ada",
    "Ada Lovelace wrote the first program",
)
"""Text by others that looks close but does not mention the subject: must stay byte-identical."""


def seed_rows() -> dict[str, list[dict[str, Any]]]:
    """Four users; the subject (1, ``ada``) is mentioned in others' posts and in audits."""
    names = {1: "ada", 2: "bob", 3: "cy", 4: "dee"}
    rows: dict[str, list[dict[str, Any]]] = {t.name: [] for t in TABLES}
    for person, name in names.items():
        rows["users"].append(
            {
                "id": person,
                "username": name,
                "email": f"{name}@example.com",
                "first_name": name.title(),
                "last_name": "Example",
                "password_hash": f"$argon2id$v=19$m=65536,t=3,p=4${name}salt$hashvalue{person}",
                "totp_secret": f"JBSWY3DPEHPK3PX{person}",
                "external_id": uuid.UUID(int=person),
                "settings": {"theme": "dark", "digest": f"{name}@example.com"},
                "last_login_ip": f"192.0.2.{person}",
                "position": "engineer",
            }
        )
        rows["access_tokens"].append(
            {"id": person, "user_id": person, "token": f"pat_{name}_0123456789abcdef", "label": "cli"}
        )
    texts = [*MENTIONS, *NEAR_MISSES]
    post_id = 0
    for person in (1, 2, 3, 4):
        for index, text in enumerate(texts if person != 1 else ("my own post",)):
            post_id += 1
            rows["posts"].append(
                {
                    "id": post_id,
                    "CreatorId": person,
                    "reply_to_id": 1 if person != 1 else None,  # replies across users
                    "body": text,
                    "created_at": datetime(2026, 1, 1, 12, index),  # noqa: DTZ001 - naive TIMESTAMP
                }
            )
    for index, (post, user) in enumerate(((1, 2), (2, 1), (3, 1), (4, 3))):
        rows["reactions"].append({"id": index + 1, "post_id": post, "UserId": user, "emoji": "+1"})
    rows["direct_channels"] = [
        {"id": 1, "owner_id": 1, "member_id": 2, "owner_alias": "A", "member_alias": "B"},
        {"id": 2, "owner_id": 3, "member_id": 1, "owner_alias": "C", "member_alias": "A"},
        {"id": 3, "owner_id": 3, "member_id": 4, "owner_alias": "C", "member_alias": "D"},
    ]
    rows["audits"] = [
        {
            "id": 1,
            "actor_id": 2,
            "action": "password_reset",
            "note": "reset for ada@example.com",
            "details": {"target": "ADA@example.com", "by": "bob"},
        },
        {"id": 2, "actor_id": 1, "action": "login", "note": "login by @ada", "details": {"ip": "192.0.2.1"}},
        {
            "id": 3,
            "actor_id": 4,
            "action": "ban",
            "note": "banned adam (not ada.lovelace)",
            "details": {"target": "adam@example.com"},
        },
    ]
    return rows


async def create_target(engine: AsyncEngine) -> None:
    """Create the schema (no foreign keys) and insert the seed rows."""
    rows = seed_rows()
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        for table in TABLES:
            await conn.execute(insert(table), rows[table.name])


async def snapshot(engine: AsyncEngine) -> dict[str, dict[Any, dict[str, Any]]]:
    """Every row of every table, by id."""
    result: dict[str, dict[Any, dict[str, Any]]] = {}
    async with engine.connect() as conn:
        for table in TABLES:
            rows = (await conn.execute(select(table))).mappings().all()
            result[table.name] = {r["id"]: dict(r) for r in rows}
    return result
