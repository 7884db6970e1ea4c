"""Surrogates computed in SQL keep NOT NULL, UNIQUE, length and CHECK holding on every dialect."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from app.engine.surrogates import (
    SurrogateContext,
    hash_key_from_secret,
    hash_message_prefix,
    install_sqlite_functions,
    surrogate_expression,
)

SECRET = "surrogate-test-secret-that-is-long-enough"
ROWS = 300


def _people(dialect: str) -> Table:
    metadata = MetaData()
    columns: list[Any] = [
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("email", String(24), nullable=False, unique=True),
        Column("name", String(40), nullable=False),
        Column("nickname", String(5), nullable=False),
        Column("age", Integer, nullable=False),
        Column("born", Date, nullable=False),
        Column("seen_at", DateTime(timezone=True), nullable=False),
        Column("created", DateTime, nullable=False),
        Column("active", Boolean, nullable=False),
        Column("prefs", JSON, nullable=False),
        Column("token", String(40), nullable=False, unique=True),
        Column("code", String(10), nullable=False),
        Column("note", String(200), nullable=True),
        CheckConstraint("name <> ''", name="ck_people_name"),
        CheckConstraint("age >= 0 AND age < 150", name="ck_people_age"),
        CheckConstraint("code <> 'forbidden'", name="ck_people_code"),
    ]
    if dialect == "postgresql":
        columns.append(Column("ref", Uuid, nullable=False, unique=True))
    return Table("people", metadata, *columns)


def _row(i: int, dialect: str) -> dict[str, Any]:
    row = {
        "id": i * 1_000_003 if i % 2 else i,
        "email": f"p{i}@example.com",
        "name": f"Person {i}",
        "nickname": f"n{i % 999}",
        "age": 20 + i % 50,
        "born": date(1990, 1, 1 + i % 27),
        "seen_at": datetime(2024, 5, 1, 12, tzinfo=UTC),
        "created": datetime(2024, 5, 1, 12),  # noqa: DTZ001 - a naive column on purpose
        "active": True,
        "prefs": {"theme": "dark", "i": i},
        "token": f"tok-{i}",
        "code": f"C{i}",
        "note": "likes cats",
    }
    if dialect == "postgresql":
        import uuid

        row["ref"] = uuid.uuid4()
    return row


SURROGATES = {
    "email": None,
    "name": None,
    "nickname": "redacted",
    "age": None,
    "born": None,
    "seen_at": "epoch",
    "created": None,
    "active": None,
    "prefs": None,
    "token": "hash",
    "code": "constant:n/a",
    "note": "null",
    "ref": None,
}


async def test_surrogates_keep_constraints_on_every_dialect(target_engine: AsyncEngine) -> None:
    dialect = target_engine.dialect.name
    people = _people(dialect)
    key = hash_key_from_secret(SECRET)
    async with target_engine.begin() as connection:
        await connection.run_sync(people.metadata.create_all)
        if dialect == "sqlite":
            await connection.run_sync(lambda c: install_sqlite_functions(c.connection.dbapi_connection))
        rows = [_row(i, dialect) for i in range(1, ROWS + 1)]
        await connection.execute(insert(people), rows)
        values = {
            name: surrogate_expression(
                SurrogateContext(
                    people,
                    name,
                    ("id",),
                    dialect,
                    unique=people.c[name].unique or False,
                    hash_key=key,
                ),
                spec,
            )
            for name, spec in SURROGATES.items()
            if name in people.c
        }
        await connection.execute(update(people).values(values))
        result = (await connection.execute(select(people).order_by(people.c.id))).mappings().all()

    assert len(result) == ROWS
    emails = [r["email"] for r in result]
    assert len(set(emails)) == ROWS
    assert all(len(e) <= 24 and e.endswith((".example", ".invalid")) for e in emails)
    assert any(e.startswith("erased-") for e in emails)
    assert any(e.endswith("@x.invalid") for e in emails)
    originals = {r["id"]: r for r in rows}
    for row in result:
        original = originals[row["id"]]
        assert row["name"] == "redacted"
        assert row["nickname"] == "redac"
        assert row["age"] == 0
        assert row["born"] == date(1970, 1, 1)
        assert row["active"] is False or row["active"] == 0
        assert row["prefs"] == {}
        assert row["token"] != original["token"]
        assert row["token"] == key.digest(f"{hash_message_prefix('people', 'token')}{row['id']}")[:40]
        assert row["code"] == "n/a"
        assert row["note"] is None
        created = row["created"]
        assert created.replace(tzinfo=None) == datetime(1970, 1, 1)  # noqa: DTZ001
        seen = row["seen_at"]
        assert seen.replace(tzinfo=seen.tzinfo or UTC) == datetime(1970, 1, 1, tzinfo=UTC)
    if dialect == "postgresql":
        assert len({r["ref"] for r in result}) == ROWS
        assert {r["ref"].version for r in result} == {3}
