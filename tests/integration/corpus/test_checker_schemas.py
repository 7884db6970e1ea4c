"""The erasure checker on PostgreSQL and MariaDB across a named schema (a MariaDB database): a
correct hand-made erasure passes, planted leftovers and broken constraints fail it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.manifest.loading import load_manifest
from app.manifest.model import Manifest
from tests.integration.erasure_checker import erasure_findings, take_snapshot
from tests.integration.property.generated import Design, build_metadata
from tests.servers import DatabaseServer

SUBJECT = ("1",)


@pytest.fixture(params=["postgresql", "mysql"])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[tuple[AsyncEngine, str, str]]:
    """A database with ``person`` and ``messages`` in the default schema and ``addresses`` in a
    named one; yields the engine, the dialect and the named schema."""
    kind = request.param
    server: DatabaseServer = request.getfixturevalue(
        "postgres_server" if kind == "postgresql" else "mysql_server"
    )
    url = await server.create_database("lethe_checker")
    named = "crm" if kind == "postgresql" else f"lethe_crm_{uuid.uuid4().hex[:10]}"
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        if kind == "postgresql":
            await connection.execute(text(f'CREATE SCHEMA "{named}"'))
        else:
            await connection.execute(text(f"CREATE DATABASE `{named}`"))
            server.created.append(named)
    design = Design(
        (None, named), ("username", "ext_id", "settings", "score"), {"addresses": named, "messages": None}
    )
    async with engine.connect() as connection:
        default = (await connection.execute(text("SELECT database()"))).scalar() if kind == "mysql" else None
    metadata = build_metadata(design, kind, default)
    tables = {t.name: t for t in metadata.tables.values()}
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        for table, rows in _rows(kind).items():
            await connection.execute(insert(tables[table]), rows)
    yield engine, kind, named
    await engine.dispose()


def _rows(kind: str) -> dict[str, list[dict[str, Any]]]:
    def ext_id(index: int) -> uuid.UUID | str:
        value = uuid.UUID(int=index, version=4)
        return value if kind == "postgresql" else str(value)

    people = [
        {
            "id": i,
            "email": f"person{i}@example.org",
            "full_name": f"Given{i} Family{i}",
            "created_at": datetime(2024, 1, 1, 10, 0),  # noqa: DTZ001 - a naive TIMESTAMP column
            "username": f"user_{i}",
            "ext_id": ext_id(i),
            "settings": {"theme": f"theme-of-{i}"},
            "score": i,
        }
        for i in (1, 2, 3)
    ]
    return {
        "person": people,
        "addresses": [
            {"id": i, "person_id": 1 + i % 3, "street": f"{i} Long Road", "city": "Springfield"}
            for i in range(1, 7)
        ],
        "messages": [
            {"id": 1, "sender_id": 1, "recipient_id": 2, "body": "hello two"},
            {"id": 2, "sender_id": 2, "recipient_id": 1, "body": "hello one"},
            {"id": 3, "sender_id": 3, "recipient_id": 2, "body": "three to two"},
        ],
    }


def _manifest(named: str) -> Manifest:
    document = {
        "system": "checker",
        "connection": {"env": "LETHE_TARGET_CHECKER_URL"},
        "subject": {"table": "person", "key": "id", "identities": {"email": "email"}},
        "tables": {
            "person": {
                "columns": {
                    "email": {"category": "user.contact.email", "surrogate": "email"},
                    "full_name": {"category": "user.name"},
                    "username": {"category": "user.name", "surrogate": "unique"},
                    "settings": {"category": "user.preferences", "strategy": "delete"},
                }
            },
            f"{named}.addresses": {
                "strategy": "delete",
                "columns": {"street": {"category": "user.contact.address"}},
            },
            "messages": {
                "links": {
                    "sender": {"path": [{"from": "sender_id", "to": "person"}], "columns": ["body"]},
                    "recipient": {"path": [{"from": "recipient_id", "to": "person"}]},
                },
                "columns": {"body": {"category": "user.content"}},
            },
        },
    }
    return load_manifest(json.dumps(document), "json")


def _erasure(named: str, kind: str) -> list[str]:
    addresses = f'"{named}".addresses' if kind == "postgresql" else f"`{named}`.addresses"
    return [
        "UPDATE person SET email = 'erased-1@invalid.example', full_name = 'erased', username = 'erased-1', "
        "settings = NULL WHERE id = 1",
        f"DELETE FROM {addresses} WHERE person_id = 1",
        "UPDATE messages SET body = 'erased' WHERE sender_id = 1",
    ]


async def _findings(engine: AsyncEngine, named: str, *statements: str) -> list[str]:
    schemas = (None, named)
    before = await take_snapshot(engine, schemas)
    async with engine.begin() as connection:
        for statement in statements:
            await connection.execute(text(statement))
    after = await take_snapshot(engine, schemas)
    return await erasure_findings(engine, _manifest(named), SUBJECT, before, after)


async def test_a_correct_erasure_across_schemas_passes(target: tuple[AsyncEngine, str, str]) -> None:
    engine, kind, named = target
    assert await _findings(engine, named, *_erasure(named, kind)) == []


async def test_a_leftover_in_the_named_schema_fails(target: tuple[AsyncEngine, str, str]) -> None:
    engine, kind, named = target
    addresses = f'"{named}".addresses' if kind == "postgresql" else f"`{named}`.addresses"
    findings = await _findings(
        engine,
        named,
        *_erasure(named, kind),
        f"UPDATE {addresses} SET city = 'person1@example.org' WHERE id = 2",
    )
    assert any(f.startswith(f"(b) {named}.addresses row ('2',) column city") for f in findings), findings
    assert any(f.startswith(f"(a) row of someone else {named}.addresses ('2',)") for f in findings), findings


async def test_a_subject_row_left_in_the_named_schema_fails(target: tuple[AsyncEngine, str, str]) -> None:
    engine, kind, named = target
    findings = await _findings(engine, named, *_erasure(named, kind)[::2])  # addresses not deleted
    assert f"(a) {named}.addresses row ('3',): the subject's row was not deleted" in findings, findings


async def test_the_other_side_of_a_shared_row_must_not_change(target: tuple[AsyncEngine, str, str]) -> None:
    engine, kind, named = target
    findings = await _findings(
        engine, named, *_erasure(named, kind), "UPDATE messages SET body = 'x' WHERE id = 2"
    )
    assert "(d) kept row of the subject messages ('2',) changed in columns ['body']" in findings, findings


async def test_a_violated_check_constraint_fails(target: tuple[AsyncEngine, str, str]) -> None:
    engine, kind, named = target
    if kind == "postgresql":  # existing rows are not checked by a NOT VALID constraint
        planted = "ALTER TABLE person ADD CONSTRAINT ck_person_planted CHECK (score > 1) NOT VALID"
    else:
        planted = "ALTER TABLE person ADD CONSTRAINT ck_person_planted CHECK (score > 1)"
    statements = [*_erasure(named, kind), planted]
    if kind == "mysql":
        statements.insert(0, "SET SESSION check_constraint_checks = 0")
    findings = await _findings(engine, named, *statements)
    assert any(
        "CHECK violated: person constraint ck_person_planted fails on 1 row(s)" in f for f in findings
    ), findings
