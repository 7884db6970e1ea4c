"""Scrubbing walks tables with a composite primary key in keyset batches, on every database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.engine.scrub import SCRUB_SURROGATE, prepare_connection, run_scrubs
from app.manifest.model import Manifest

METADATA = MetaData()
MESSAGES = Table(
    "messages",
    METADATA,
    Column("thread_id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("body", String(200), nullable=False),
)
USERS = Table(
    "users",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("email", String(120), nullable=False),
)
EMAIL = "ada@example.com"
MANIFEST = msgspec.convert(
    {
        "system": "chat",
        "connection": {"env": "CHAT_URL"},
        "subject": {"table": "users", "key": "id", "identities": {"email": "email"}},
        "tables": {"messages": {"columns": {"body": {"category": "user.content", "scrub": ["email"]}}}},
    },
    Manifest,
)
ROWS = [
    (1, 1, f"ask {EMAIL} please"),
    (1, 2, "nothing here"),
    (1, 3, f"cc {EMAIL}"),
    (2, 1, f"{EMAIL} wrote"),
    (2, 2, "bob@example.com only"),
    (3, 1, f"again {EMAIL}"),
    (3, 2, f"and {EMAIL}."),
]


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
async def chat_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    else:
        name = "postgres_server" if request.param == "postgresql" else "mysql_server"
        url = str(await request.getfixturevalue(name).create_database("lethe_scrub"))
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(METADATA.create_all)
        await conn.execute(insert(USERS), [{"id": 1, "email": EMAIL}])
        await conn.execute(insert(MESSAGES), [{"thread_id": t, "seq": s, "body": b} for t, s, b in ROWS])
    yield engine
    await engine.dispose()


async def test_composite_key_table_is_scrubbed_in_batches(chat_engine: AsyncEngine) -> None:
    updates: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    event.listen(chat_engine.sync_engine, "before_cursor_execute", count)
    async with chat_engine.connect() as conn:
        await prepare_connection(conn)
        changed = await run_scrubs(
            conn, {"messages": MESSAGES}, MANIFEST, {"email": EMAIL}, batch_size=2, own_transactions=True
        )
    event.remove(chat_engine.sync_engine, "before_cursor_execute", count)
    async with chat_engine.connect() as conn:
        bodies = {(r.thread_id, r.seq): r.body for r in await conn.execute(select(MESSAGES))}

    assert changed == {"messages.body": 5}
    assert len(updates) == 3  # five mentioning rows, two per batch
    for thread, seq, body in ROWS:
        expected = body.replace(EMAIL, SCRUB_SURROGATE)
        assert bodies[(thread, seq)] == expected
