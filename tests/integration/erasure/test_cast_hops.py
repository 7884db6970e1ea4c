"""A logical reference stored as another type: refused without `cast:`, exported and erased with it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, Uuid, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.engine.erasure import ErasureOptions, execute_erasure
from app.engine.schema_info import reflect_schema
from app.engine.subjects import reflect_target, resolve_subject, subject_condition
from app.lib.errors import ManifestInvalid
from app.manifest.loading import load_manifest
from app.manifest.model import Manifest
from app.manifest.validation import validate

OPTIONS = ErasureOptions(secret="cast-hop-test-secret-cast-hop-test-secret")
PEOPLE = 4


def _key(kind: str, person: int) -> Any:
    """PostgreSQL keys people by a native uuid; the others by an integer."""
    return uuid.UUID(int=person + 1000) if kind == "postgresql" else person


async def _create(engine: AsyncEngine) -> str:
    kind = engine.dialect.name
    metadata = MetaData()
    key_type: Any = Uuid() if kind == "postgresql" else Integer()
    users = Table(
        "users",
        metadata,
        Column("id", key_type, primary_key=True, autoincrement=False),
        Column("email", String(120), nullable=False, unique=True),
    )
    notes = Table(  # the reference is text, as applications often keep it, with no foreign key
        "notes",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_ref", String(64), nullable=False),
        Column("body", Text, nullable=False),
    )
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(
            insert(users), [{"id": _key(kind, p), "email": f"p{p}@example.com"} for p in range(PEOPLE)]
        )
        rows = [
            {"id": p * 10 + n, "user_ref": str(_key(kind, p)), "body": f"note {n} of {p}"}
            for p in range(PEOPLE)
            for n in range(2)
        ]
        await connection.execute(insert(notes), rows)
    return "uuid" if kind == "postgresql" else "integer"


def _manifest(cast: str | None) -> Manifest:
    hop = "{from: user_ref, to: users" + (f", cast: {cast}" if cast else "") + "}"
    return load_manifest(
        f"""
system: casts
connection: {{env: CAST_TEST_URL}}
subject: {{table: users, key: id, identities: {{email: email}}}}
tables:
  users:
    columns:
      email: {{category: user.contact.email, surrogate: email}}
  notes:
    strategy: delete
    link:
      path:
        - {hop}
    columns:
      body: {{category: user.content.note}}
"""
    )


async def _rows(engine: AsyncEngine, table: str) -> dict[Any, tuple[Any, ...]]:
    metadata = MetaData()
    async with engine.connect() as connection:
        await connection.run_sync(lambda sync: metadata.reflect(sync, only=[table]))
        result = await connection.execute(select(metadata.tables[table]))
        return {row[0]: tuple(row) for row in result}


async def test_a_hop_between_different_types_is_refused_naming_both(target_engine: AsyncEngine) -> None:
    await _create(target_engine)
    async with target_engine.connect() as connection:
        schema = await reflect_schema(connection)
    _, issues = validate(_manifest(None), schema)
    (mismatch,) = [i for i in issues if i.kind == "type_mismatch"]
    assert mismatch.path == "tables.notes.link.path[0]"
    assert "'notes.user_ref' (varchar)" in mismatch.message
    assert f"'users.id' ({schema.tables['users'].columns['id'].type_name})" in mismatch.message
    assert "cast:" in mismatch.message


async def test_a_cast_hop_exports_and_erases_exactly_the_subjects_rows(target_engine: AsyncEngine) -> None:
    cast = await _create(target_engine)
    kind = target_engine.dialect.name
    manifest = _manifest(cast)
    async with target_engine.connect() as connection:
        _, issues = validate(manifest, await reflect_schema(connection))
        assert [i for i in issues if i.severity == "error"] == []
        target = await reflect_target(connection, manifest)
        key = await resolve_subject(connection, manifest, target.tables["users"], {"email": "p1@example.com"})
        assert key is not None
        exported = await connection.execute(
            select(target.tables["notes"]).where(subject_condition(target, "notes", key))
        )
        assert sorted(row[0] for row in exported) == [10, 11]

    before = await _rows(target_engine, "notes")
    outcome = await execute_erasure(target_engine, manifest, {"email": "p1@example.com"}, OPTIONS)
    after = await _rows(target_engine, "notes")

    assert outcome.found
    assert outcome.verified
    assert outcome.deleted["notes"] == 2
    assert set(before) - set(after) == {10, 11}
    assert {k: v for k, v in before.items() if k not in (10, 11)} == after
    users = await _rows(target_engine, "users")
    assert users[_key(kind, 1)][1] != "p1@example.com"
    assert {users[_key(kind, p)][1] for p in (0, 2, 3)} == {
        "p0@example.com",
        "p2@example.com",
        "p3@example.com",
    }


@pytest.mark.parametrize("cast", ["uuid", "integer"])
def test_cast_names_are_validated_with_a_suggestion(cast: str) -> None:
    with pytest.raises(ManifestInvalid) as caught:
        _manifest(cast + "x")
    assert f"did you mean '{cast}'" in caught.value.detail
