"""Every column type a target offers gets a default surrogate the target accepts, validation and
execution agree, CHECK constraints are proved in the target, and re-applying an erasure changes
nothing: on SQLite, PostgreSQL and MariaDB, with each database's native types."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.engine.check_proof import prove_checks
from app.engine.erasure import ErasureBlocked, ErasureOptions, execute_erasure, plan_erasure
from app.engine.schema_info import reflect_schema
from app.engine.surrogates import (
    UNSPECIFIED_ADDRESS,
    UNSPECIFIED_IPV6_ADDRESS,
    UNSPECIFIED_NETWORK,
    uuid_for_key,
)
from app.engine.targets import TargetRegistry
from app.manifest.issues import Issue
from app.manifest.model import Manifest
from app.manifest.validation import validate
from tests.conftest import make_settings

SECRET = "column-types-secret-column-types-secret"
OPTIONS = ErasureOptions(secret=SECRET)
PEOPLE = 4

_PEOPLE_DDL = {
    "postgresql": """CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE TABLE people (
  id integer PRIMARY KEY, email varchar(40) NOT NULL UNIQUE, handle varchar(30) NOT NULL UNIQUE,
  ext_id uuid NOT NULL UNIQUE, country char(2) NOT NULL, age integer NOT NULL,
  salary numeric(10, 2) NOT NULL, born date NOT NULL, wakes time NOT NULL,
  seen_at timestamp with time zone NOT NULL, created timestamp NOT NULL, photo bytea NOT NULL,
  verified boolean NOT NULL, settings jsonb NOT NULL, prefs json NOT NULL, last_ip inet NOT NULL,
  home_net cidr NOT NULL, tags text[] NOT NULL, state mood NOT NULL, note text);
CREATE TABLE logins (id integer PRIMARY KEY, person_id integer NOT NULL REFERENCES people(id),
  ip inet NOT NULL, agent varchar(200) NOT NULL)""",
    "mysql": """CREATE TABLE people (
  id integer PRIMARY KEY, email varchar(40) NOT NULL UNIQUE, handle varchar(30) NOT NULL UNIQUE,
  ext_id uuid NOT NULL UNIQUE, country char(2) NOT NULL, age integer NOT NULL,
  salary numeric(10, 2) NOT NULL, born date NOT NULL, wakes time NOT NULL,
  seen_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP, created datetime NOT NULL,
  photo blob NOT NULL, verified boolean NOT NULL, settings json NOT NULL, prefs json NOT NULL,
  state enum('calm', 'busy') NOT NULL, last_ip4 inet4 NOT NULL, last_ip6 inet6 NOT NULL,
  lan_ip4 inet4 NOT NULL UNIQUE, lan_ip6 inet6 NOT NULL UNIQUE, note text);
CREATE TABLE logins (id integer PRIMARY KEY, person_id integer NOT NULL REFERENCES people(id),
  ip varchar(45) NOT NULL, agent varchar(200) NOT NULL)""",
    "sqlite": """CREATE TABLE people (
  id integer PRIMARY KEY, email varchar(40) NOT NULL UNIQUE, handle varchar(30) NOT NULL UNIQUE,
  ext_id char(36) NOT NULL UNIQUE, country char(2) NOT NULL, age integer NOT NULL,
  salary numeric(10, 2) NOT NULL, born date NOT NULL, wakes time NOT NULL,
  seen_at timestamp NOT NULL, created datetime NOT NULL, photo blob NOT NULL,
  verified boolean NOT NULL, settings json NOT NULL, prefs json NOT NULL, note text);
CREATE TABLE logins (id integer PRIMARY KEY, person_id integer NOT NULL REFERENCES people(id),
  ip varchar(45) NOT NULL, agent varchar(200) NOT NULL)""",
}
_POSTGRES_ONLY = ("last_ip", "home_net", "tags")
_NOT_SQLITE = ("state",)


def _person(i: int, dialect: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": i,
        "email": f"person{i}@example.com",
        "handle": f"person_{i}",
        "ext_id": str(uuid.UUID(int=i)),
        "country": "FR",
        "age": 30 + i,
        "salary": "1234.50",
        "born": "1990-02-03",
        "wakes": "07:30:00",
        "seen_at": "2024-05-01 12:00:00",
        "created": "2024-05-01 12:00:00",
        "photo": b"\x89PNG" + bytes([i]),
        "verified": True,
        "settings": '{"theme": "dark"}',
        "prefs": '{"lang": "fr"}',
        "note": "likes cats",
    }
    if dialect == "postgresql":
        row |= {"last_ip": "192.0.2.7", "home_net": "192.0.2.0/24", "tags": "{a,b}", "state": "busy"}
    if dialect == "mysql":
        row |= {"state": "busy", "last_ip4": "192.0.2.7", "last_ip6": "2001:db8::7"}
        row |= {"lan_ip4": f"10.0.0.{i}", "lan_ip6": f"fd00::{i}"}
    return row


_POSTGRES_CASTS = {
    "ext_id": "uuid",
    "salary": "numeric",
    "born": "date",
    "wakes": "time",
    "seen_at": "timestamptz",
    "created": "timestamp",
    "settings": "jsonb",
    "prefs": "json",
    "last_ip": "inet",
    "home_net": "cidr",
    "tags": "text[]",
    "state": "mood",
}


def _insert_sql(columns: list[str], dialect: str) -> str:
    """asyncpg binds by the column's type: text values go through ``CAST(CAST(:v AS text) AS t)``."""
    values = [
        f"CAST(CAST(:{c} AS text) AS {_POSTGRES_CASTS[c]})"
        if dialect == "postgresql" and c in _POSTGRES_CASTS
        else f":{c}"
        for c in columns
    ]
    return f"INSERT INTO people ({', '.join(columns)}) VALUES ({', '.join(values)})"


@pytest.fixture
async def typed(target_url: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A target with a subject table holding every type the dialect has, and a deleted table."""
    registry = TargetRegistry(make_settings(tmp_path), environ={"TYPES_TARGET_URL": target_url})
    if target_url.startswith("sqlite"):
        (tmp_path / "target.db").touch()
    engine = await registry.engine("types", _manifest("sqlite").connection)
    dialect = engine.dialect.name
    async with engine.begin() as conn:
        for statement in _PEOPLE_DDL[dialect].split(";\n"):
            await conn.execute(text(statement))
        for i in range(1, PEOPLE + 1):
            row = _person(i, dialect)
            await conn.execute(text(_insert_sql(list(row), dialect)), row)
            login = {"id": i, "person_id": i, "ip": "192.0.2.9", "agent": "curl"}
            await conn.execute(
                text("INSERT INTO logins (id, person_id, ip, agent) VALUES (:id, :person_id, :ip, :agent)"),
                login,
            )
    yield engine
    await registry.dispose()


def _manifest(dialect: str, **overrides: Any) -> Manifest:
    """Every column with its default surrogate (SQLite keeps uuids as text: it asks for `uuid`)."""
    columns = [c for c in _person(1, dialect) if c != "id"]
    if dialect == "sqlite":
        overrides = {"ext_id": {"surrogate": "uuid"}} | overrides
    return msgspec.convert(
        {
            "system": "types",
            "connection": {"env": "TYPES_TARGET_URL"},
            "subject": {"table": "people", "key": "id", "identities": {"person_id": "id"}},
            "tables": {
                "people": {
                    "strategy": "anonymize",
                    "columns": {c: {"category": "user.other"} | overrides.get(c, {}) for c in columns},
                },
                "logins": {
                    "strategy": "delete",
                    "columns": {"ip": {"category": "user.device.ip_address"}},
                },
            },
        },
        Manifest,
    )


async def _validate(engine: AsyncEngine, manifest: Manifest) -> list[Issue]:
    async with engine.connect() as conn:
        schema = await reflect_schema(conn)
        _, issues = validate(manifest, schema)
        issues += await prove_checks(conn, manifest, schema, SECRET)
    return [i for i in issues if i.severity == "error"]


async def _row_of(engine: AsyncEngine, person: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        query = text("SELECT * FROM people WHERE id = :id")
        return dict((await conn.execute(query, {"id": person})).mappings().one())


async def _rows(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text("SELECT * FROM people ORDER BY id"))).all()]


async def test_every_column_type_takes_its_default_and_a_replay_changes_nothing(typed: AsyncEngine) -> None:
    dialect = typed.dialect.name
    manifest = _manifest(dialect)
    assert await _validate(typed, manifest) == []
    async with typed.connect() as conn:  # a NOT NULL column of a deleted table needs no surrogate
        plan = await plan_erasure(conn, manifest, {"person_id": "1"}, OPTIONS)
    assert plan.blocked is None
    before = await _rows(typed)
    for subject in ("1", "2"):  # two subjects: the UNIQUE columns' surrogates must not collide
        outcome = await execute_erasure(typed, manifest, {"person_id": subject}, OPTIONS)
        assert outcome.verified
    after = await _rows(typed)
    assert after[2:] == before[2:]  # nobody else changed
    erased = await _row_of(typed, 1)
    assert erased["email"] == "erased-1@invalid.example"
    assert erased["handle"] == "erased-1"
    derived = uuid.UUID(str(erased["ext_id"]))
    assert (derived.version, derived.variant) == (3, uuid.RFC_4122)
    assert str(derived) == uuid_for_key("1")  # the SQL computes what the Python mirror does
    assert str(erased["country"]).strip() == "re"
    assert (erased["age"], float(erased["salary"]), bool(erased["verified"])) == (0, 0.0, False)
    assert str(erased["born"]) == "1970-01-01"
    assert bytes(erased["photo"]) == b""
    assert erased["note"] == "redacted"
    await _assert_json_objects(typed)
    if dialect == "postgresql":
        network = (str(erased["last_ip"]), str(erased["home_net"]), erased["tags"])
        assert network == (UNSPECIFIED_ADDRESS, UNSPECIFIED_NETWORK, [])
    if dialect == "mysql":  # MariaDB's INET4 and INET6: each its own family; UNIQUE: the key's
        addresses = tuple(str(erased[c]) for c in ("last_ip4", "last_ip6", "lan_ip4", "lan_ip6"))
        assert addresses == (UNSPECIFIED_ADDRESS, UNSPECIFIED_IPV6_ADDRESS, "0.0.0.1", "::1")
    if dialect != "sqlite":
        assert erased["state"] == "calm"
    async with typed.connect() as conn:
        assert (
            await conn.execute(text("SELECT count(*) FROM logins WHERE person_id IN (1, 2)"))
        ).scalar() == 0
    again = await execute_erasure(typed, manifest, {"person_id": "1"}, OPTIONS)
    assert sum(again.anonymized.values()) == 0
    assert await _rows(typed) == after


async def _assert_json_objects(engine: AsyncEngine) -> None:
    query = {
        "postgresql": "SELECT jsonb_typeof(settings), json_typeof(prefs) FROM people WHERE id = 1",
        "mysql": "SELECT json_type(settings), json_type(prefs) FROM people WHERE id = 1",
        "sqlite": "SELECT json_type(settings), json_type(prefs) FROM people WHERE id = 1",
    }[engine.dialect.name]
    async with engine.connect() as conn:
        kinds = tuple(str(k).lower() for k in (await conn.execute(text(query))).one())
    assert kinds == ("object", "object")


async def test_json_constants_are_written_as_json_values(typed: AsyncEngine) -> None:
    manifest = _manifest(
        typed.dialect.name,
        settings={"surrogate": {"kind": "constant", "value": {}}},
        prefs={"surrogate": {"kind": "constant", "value": "{}"}},
    )
    assert await _validate(typed, manifest) == []
    await execute_erasure(typed, manifest, {"person_id": "1"}, OPTIONS)
    await _assert_json_objects(typed)


@pytest.mark.parametrize(
    ("column", "value", "type_word"),
    [("verified", "maybe", "bool"), ("age", "n/a", "int"), ("born", "unknown", "date")],
)
async def test_constants_of_the_wrong_type_are_refused_naming_column_value_and_type(
    typed: AsyncEngine, column: str, value: str, type_word: str
) -> None:
    manifest = _manifest(typed.dialect.name, **{column: {"surrogate": {"kind": "constant", "value": value}}})
    errors = await _validate(typed, manifest)
    assert [(e.kind, e.table, e.column) for e in errors] == [("surrogate_type", "people", column)]
    assert f"'{value}'" in errors[0].message
    assert type_word in errors[0].message.lower()


async def test_unique_on_a_uuid_column_is_the_derived_uuid(typed: AsyncEngine) -> None:
    manifest = _manifest(typed.dialect.name, ext_id={"surrogate": "unique"})
    assert await _validate(typed, manifest) == []
    await execute_erasure(typed, manifest, {"person_id": "3"}, OPTIONS)
    written = str((await _row_of(typed, 3))["ext_id"])
    if typed.dialect.name == "sqlite":  # no uuid type: a text column takes the text form
        assert written == "erased-3"
        return
    derived = uuid.UUID(written)
    assert (derived.version, derived.variant) == (3, uuid.RFC_4122)


_HANDLE_CHECK = {
    "postgresql": "ALTER TABLE people ADD CONSTRAINT ck_people_handle CHECK (handle ~ '^[a-z0-9_]+$')",
    "mysql": "ALTER TABLE people ADD CONSTRAINT ck_people_handle CHECK (handle REGEXP '^[a-z0-9_]+$')",
}


async def _with_handle_check(engine: AsyncEngine) -> None:
    dialect = engine.dialect.name
    if dialect == "sqlite":  # SQLite cannot add a CHECK to a table: rebuild it with one
        async with engine.begin() as conn:
            await conn.execute(text("PRAGMA foreign_keys=OFF"))
            await conn.execute(text("DROP TABLE logins"))
            await conn.execute(text("ALTER TABLE people RENAME TO people_old"))
            ddl = (
                _PEOPLE_DDL["sqlite"]
                .split(";\n")[0]
                .replace(
                    "note text)",
                    "note text, CONSTRAINT ck_people_handle CHECK (handle NOT GLOB '*[^a-z0-9_]*'))",
                )
            )
            await conn.execute(text(ddl))
            await conn.execute(text("INSERT INTO people SELECT * FROM people_old"))
            await conn.execute(text("DROP TABLE people_old"))
        return
    async with engine.begin() as conn:
        await conn.execute(text(_HANDLE_CHECK[dialect]))


async def test_a_surrogate_violating_a_check_is_refused_at_validation_and_named_at_run_time(
    typed: AsyncEngine,
) -> None:
    await _with_handle_check(typed)
    manifest = _manifest(typed.dialect.name)
    manifest = msgspec.structs.replace(manifest, tables={"people": manifest.tables["people"]})
    errors = await _validate(typed, manifest)
    assert [(e.kind, e.table, e.column) for e in errors] == [("check_violation", "people", "handle")]
    assert "ck_people_handle" in errors[0].message
    assert "`unique`" in errors[0].message
    before = await _rows(typed)
    with pytest.raises(ErasureBlocked) as refused:
        await execute_erasure(typed, manifest, {"person_id": "1"}, OPTIONS)
    assert "ck_people_handle" in refused.value.detail
    assert "'people'" in refused.value.detail
    assert await _rows(typed) == before  # rolled back
    hashed = _manifest(typed.dialect.name, handle={"surrogate": "hash"})
    hashed = msgspec.structs.replace(hashed, tables={"people": hashed.tables["people"]})
    assert await _validate(typed, hashed) == []
    await execute_erasure(typed, hashed, {"person_id": "1"}, OPTIONS)
    await execute_erasure(typed, hashed, {"person_id": "1"}, OPTIONS)  # stable: key-derived
    handle = (await _row_of(typed, 1))["handle"]
    assert len(handle) == 30
    assert handle != "person_1"


async def test_the_check_proof_on_an_empty_table_runs_over_a_candidate_row(typed: AsyncEngine) -> None:
    await _with_handle_check(typed)
    async with typed.begin() as conn:
        if typed.dialect.name != "sqlite":  # the SQLite rebuild dropped logins
            await conn.execute(text("DELETE FROM logins"))
        await conn.execute(text("DELETE FROM people"))
    manifest = _manifest(typed.dialect.name)
    manifest = msgspec.structs.replace(manifest, tables={"people": manifest.tables["people"]})
    errors = await _validate(typed, manifest)  # no row to prove over: the candidate row refuses
    assert [(e.kind, e.table, e.column) for e in errors] == [("check_violation", "people", "handle")]
    assert "ck_people_handle" in errors[0].message
    hashed = _manifest(typed.dialect.name, handle={"surrogate": "hash"})
    hashed = msgspec.structs.replace(hashed, tables={"people": hashed.tables["people"]})
    assert await _validate(typed, hashed) == []
