"""Named schemas end to end: PostgreSQL schemas and MariaDB databases, through engine and HTTP API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import Column, DateTime, ForeignKey, Integer, MetaData, Table, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.cli import lethe_group
from app.config import Settings
from app.engine.erasure import ErasureOptions, execute_erasure, plan_erasure
from app.engine.retention import (
    BatchLimits,
    BatchReport,
    PurgePolicy,
    compute_cutoff,
    prepare_purge,
    purge_in_batches,
)
from app.engine.targets import TargetRegistry
from app.lib.errors import ManifestInvalid, ValidationFailed
from app.manifest.lint import lint
from app.manifest.loading import load_manifest
from app.manifest.names import manifest_schemas
from app.manifest.validation import validate
from tests.conftest import TEST_AUDIT_KEY, make_settings
from tests.integration.requests_support import drain
from tests.integration.schemas_support import ENV, NamedTarget, create_named_target, named_manifest, snapshot
from tests.servers import DatabaseServer

Headers = Callable[..., dict[str, str]]


@pytest.fixture(params=["postgresql", "mysql"])
async def named(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> NamedTarget:
    """The two-schema target on each server, named by the manifest's variable."""
    server = request.getfixturevalue("postgres_server" if request.param == "postgresql" else "mysql_server")
    target = await create_named_target(request.param, server)
    monkeypatch.setenv(ENV, target.url)
    return target


def _manifest(target: NamedTarget, **connection: Any) -> Any:
    document = named_manifest(target)
    document["connection"].update(connection)
    return load_manifest(json.dumps(document), "json")


async def test_validation_and_lint_see_every_schema_and_keep_namesakes_apart(
    named: NamedTarget, tmp_path: Path
) -> None:
    manifest = _manifest(named)
    a, b = named.accounts, named.billing
    targets = TargetRegistry(make_settings(tmp_path))
    try:
        schema = await targets.reflect(manifest.system, manifest.connection, manifest_schemas(manifest))
        # `connection.schemas` may be left out: qualified names say which schemas to reflect
        implied = _manifest(named, schemas=[])
        assert manifest_schemas(implied) == (a, b)
        with pytest.raises(ManifestInvalid, match="nowhere"):
            await targets.reflect(manifest.system, manifest.connection, ("nowhere",))
    finally:
        await targets.dispose()
    assert {"users", f"{a}.users", f"{b}.users", "notes", f"{b}.payments"} <= set(schema.tables)
    assert set(schema.tables[f"{b}.users"].columns) == {"id", "account_id", "display_name"}
    assert set(schema.tables["users"].columns) == {"id", "full_name"}
    graph, issues = validate(manifest, schema)
    assert [i for i in issues if i.severity == "error"] == []
    assert graph is not None
    (payments,) = graph.paths_for(f"{b}.payments")
    assert [s.to_table for s in payments.steps] == [f"{b}.invoices", f"{a}.users"]
    (notes,) = graph.paths_for("notes")
    assert [s.to_table for s in notes.steps] == [f"{a}.users"]
    findings = [i for i in lint(manifest, schema) if not i.acknowledged]
    assert findings == []
    # a qualified name that does not exist is an unknown table, not the default schema's namesake
    wrong = json.loads(json.dumps(named_manifest(named)))
    wrong["tables"][f"{b}.user"] = wrong["tables"].pop(f"{b}.users")
    _, issues = validate(load_manifest(json.dumps(wrong), "json"), schema)
    assert any(i.kind == "unknown_table" and i.table == f"{b}.user" for i in issues), issues
    # the default schema written out names no table: unqualified names mean it, and the error says so
    default = schema.schemas[0]
    wrong["tables"][f"{default}.notes"] = wrong["tables"].pop("notes")
    _, issues = validate(load_manifest(json.dumps(wrong), "json"), schema)
    hint = f"'{default}' is the default schema, write 'notes'"
    assert any(i.table == f"{default}.notes" and hint in i.message for i in issues), issues


async def test_engine_erases_across_schemas_and_leaves_namesakes_and_others_alone(named: NamedTarget) -> None:
    manifest = _manifest(named)
    a, b = named.accounts, named.billing
    before = await snapshot(named)
    engine: AsyncEngine = create_async_engine(named.url)
    options = ErasureOptions(secret=TEST_AUDIT_KEY)
    try:
        async with engine.connect() as connection:
            plan = await plan_erasure(connection, manifest, {"email": "person1@example.com"}, options)
        rows = {t.table: t.rows for t in plan.tables}
        assert rows == {
            f"{b}.payments": 2,
            f"{b}.invoices": 2,
            f"{b}.users": 1,
            f"{a}.profiles": 1,
            "notes": 1,
            f"{a}.users": 1,
        }
        outcome = await execute_erasure(engine, manifest, {"email": "person1@example.com"}, options)
    finally:
        await engine.dispose()
    assert outcome.verified
    assert outcome.deleted == {f"{b}.payments": 2, f"{b}.users": 1, f"{a}.profiles": 1, "notes": 1}
    assert outcome.anonymized == {f"{b}.invoices": 2, f"{a}.users": 1}
    after = await snapshot(named)
    assert after["users"] == before["users"]  # the default schema's namesake is untouched
    for table, rows_before in before.items():
        for key, row in rows_before.items():
            if not _belongs_to_person_1(table, key, named):
                assert after[table][key] == row, (table, key)
    gone = {
        (f"{a}.profiles", 1),
        ("notes", 1),
        (f"{b}.users", 101),
        (f"{b}.payments", 11),
        (f"{b}.payments", 12),
    }
    assert {(t, k) for t, k in gone if k in after[t]} == set()
    assert after[f"{b}.invoices"][11][:3] == before[f"{b}.invoices"][11][:3]  # retained, amount kept
    assert after[f"{b}.invoices"][11][3] != "P1"
    erased_user = after[f"{a}.users"][1]
    assert "person1" not in erased_user[1]
    assert erased_user[2] != "Person 1"


def _belongs_to_person_1(table: str, key: int, named: NamedTarget) -> bool:
    a, b = named.accounts, named.billing
    return (table, key) in {
        (f"{a}.users", 1),
        (f"{a}.profiles", 1),
        (f"{b}.invoices", 11),
        (f"{b}.invoices", 12),
        (f"{b}.payments", 11),
        (f"{b}.payments", 12),
        (f"{b}.users", 101),
        ("notes", 1),
    }


async def _request(client: AsyncTestClient[Litestar], auth: Headers, body: dict[str, Any]) -> str:
    response = await client.post("/v1/requests", json=body, headers=auth())
    assert response.status_code == 202, response.text
    return str(response.headers["location"])


async def _completed(client: AsyncTestClient[Litestar], auth: Headers, location: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(location, headers=auth("requests:read"))).json()
    assert body["status"] == "completed", body
    return body


async def test_http_export_rectification_and_erasure_across_schemas(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    named: NamedTarget,
) -> None:
    a, b = named.accounts, named.billing
    registered = await client.post("/v1/manifests", json=named_manifest(named), headers=auth())
    assert registered.status_code in (200, 201), registered.text

    access = await _request(client, auth, {"kind": "access", "identities": {"email": "person2@example.com"}})
    await drain(settings, store_engine)
    await _completed(client, auth, access)
    document = (await client.get(f"{access}/export?format=json", headers=auth("requests:read"))).json()
    tables = document["systems"]["named"]["tables"]
    counts = {name: table["row_count"] for name, table in tables.items()}
    assert counts == {
        f"{a}.users": 1,
        f"{a}.profiles": 1,
        f"{b}.invoices": 2,
        f"{b}.payments": 2,
        f"{b}.users": 1,
        "notes": 1,
    }
    assert tables[f"{b}.users"]["rows"] == [{"id": 102, "account_id": 2, "display_name": "Display 2"}]
    assert {r["cardHolder"] for r in tables[f"{b}.payments"]["rows"]} == {"Holder 2"}
    archive = await client.get(f"{access}/export?format=zip", headers=auth("requests:read"))
    assert archive.status_code == 200

    changes = {"named": {f"{a}.users": {"full_name": "Ada King"}, f"{b}.users": {"display_name": "Ada"}}}
    rectify = await _request(
        client, auth, {"kind": "rectification", "identities": {"user_id": "2"}, "changes": changes}
    )
    before = await snapshot(named)
    await drain(settings, store_engine)
    await _completed(client, auth, rectify)
    after = await snapshot(named)
    assert after[f"{a}.users"][2][2] == "Ada King"
    assert after[f"{b}.users"][102][2] == "Ada"
    assert after["users"] == before["users"]  # the default schema's namesake is untouched
    assert after[f"{b}.users"][103] == before[f"{b}.users"][103]

    erasure = await _request(
        client, auth, {"kind": "erasure", "identities": {"email": "person2@example.com"}}
    )
    await drain(settings, store_engine)
    body = await _completed(client, auth, erasure)
    assert body["systems"][0]["counts"][f"{b}.payments"] == 2
    erased = await snapshot(named)
    gone = {(f"{b}.users", 102), ("notes", 2), (f"{a}.profiles", 2)}
    assert {(t, k) for t, k in gone if k in erased[t]} == set()
    assert erased[f"{a}.users"][2][2] != "Ada King"
    assert erased["users"] == before["users"]
    assert erased[f"{a}.users"][1] == before[f"{a}.users"][1]


async def test_sqlite_refuses_named_schemas_with_a_clear_message(
    client: AsyncTestClient[Litestar], auth: Headers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "flat.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as connection:
        await connection.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    await engine.dispose()
    monkeypatch.setenv("LETHE_TARGET_FLAT_URL", f"sqlite:///{path}")
    document = {
        "system": "flat",
        "connection": {"env": "LETHE_TARGET_FLAT_URL", "schemas": ["billing"]},
        "subject": {"table": "users", "key": "id", "identities": {"email": "email"}},
        "tables": {"users": {"columns": {"email": {"category": "user.contact.email"}}}},
    }
    refused = await client.post("/v1/manifests", json=document, headers=auth())
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert "SQLite has no named schemas" in problem["detail"]
    assert problem["errors"][0]["field"] == "connection.schemas"
    document["connection"] = {"env": "LETHE_TARGET_FLAT_URL"}
    document["subject"]["table"] = "main2.users"
    document["tables"] = {"main2.users": document["tables"]["users"]}
    refused = await client.post("/v1/manifests", json=document, headers=auth())
    assert refused.status_code == 422, refused.text
    assert "SQLite has no named schemas" in refused.json()["detail"]


# --- scaffold and search_path URLs (PostgreSQL) ---------------------------------------------------

APP_SCHEMA = (
    "CREATE SCHEMA app",
    "CREATE SCHEMA billing",
    "CREATE TABLE app.customers (id integer PRIMARY KEY, email text NOT NULL UNIQUE, full_name text)",
    "CREATE TABLE app.orders (id integer PRIMARY KEY, customer_id integer NOT NULL REFERENCES app.customers)",
    'CREATE TABLE billing."Invoices" (id integer PRIMARY KEY, customer_id integer REFERENCES app.customers,'
    " billing_name text)",
    "INSERT INTO app.customers VALUES (1, 'a@example.com', 'A'), (2, 'b@example.com', 'B')",
)


async def _app_database(server: DatabaseServer) -> str:
    url = await server.create_database("lethe_app")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in APP_SCHEMA:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _scaffold(url: str) -> Result:
    return CliRunner().invoke(lethe_group, ["manifest", "scaffold", url, "--system", "app"])


async def _validate_draft(text_: str, url: str, tmp_path: Path) -> list[str]:
    manifest = load_manifest(text_)
    assert manifest.connection.env is not None
    targets = TargetRegistry(make_settings(tmp_path), {manifest.connection.env: url})
    try:
        schema = await targets.reflect(manifest.system, manifest.connection, manifest_schemas(manifest))
    finally:
        await targets.dispose()
    _, issues = validate(manifest, schema)
    return [i.message for i in issues if i.severity == "error"]


def test_scaffold_reflects_tables_outside_public_and_search_path_urls(
    postgres_server: DatabaseServer, tmp_path: Path
) -> None:
    url = asyncio.run(_app_database(postgres_server))
    result = _scaffold(url)
    assert result.exit_code == 0, result.output
    assert "reflected schema(s): public, app, billing" in result.stderr
    draft = load_manifest(result.stdout)
    assert draft.subject.table == "app.customers"
    assert {"app.customers", "app.orders", "billing.Invoices"} <= set(draft.tables)
    assert draft.connection.schemas == ("app", "billing")
    assert asyncio.run(_validate_draft(result.stdout, url, tmp_path)) == []

    # libpq's options: asyncpg takes server settings; every schema of the search_path is reflected
    with_path = f"{url}?options=-csearch_path%3Dapp,billing"
    result = _scaffold(with_path)
    assert result.exit_code == 0, result.output
    assert "reflected schema(s): app, billing" in result.stderr
    draft = load_manifest(result.stdout)
    assert draft.subject.table == "customers"  # app is the default schema of this URL
    assert {"customers", "orders", "billing.Invoices"} <= set(draft.tables)
    assert draft.connection.schemas == ("app", "billing")
    assert asyncio.run(_validate_draft(result.stdout, with_path, tmp_path)) == []

    refused = _scaffold(f"{url}?options=--verbose")
    assert refused.exit_code == 1
    assert "`-c name=value`" in refused.output
    assert "Traceback" not in refused.output


def test_scaffold_of_an_empty_database_names_the_schemas_it_looked_at(
    postgres_server: DatabaseServer,
) -> None:
    url = asyncio.run(postgres_server.create_database("lethe_empty"))
    result = _scaffold(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    assert result.exit_code == 1
    assert "the database has no tables in schema(s) public" in result.output


# --- retention across schemas ---------------------------------------------------------------------


async def test_retention_purges_a_table_of_a_named_schema_and_sees_references_from_another(
    named: NamedTarget,
) -> None:
    a, b = named.accounts, named.billing
    metadata = MetaData()
    sessions = Table(
        "sessions",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("created_at", DateTime, nullable=False),
        schema=b,
    )
    namesake = Table(  # same name, default schema: never touched by the policy
        "sessions",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("created_at", DateTime, nullable=False),
    )
    Table(
        "session_notes",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("session_id", Integer, ForeignKey(f"{b}.sessions.id", name="fk_notes_session")),
        schema=a,
    )
    old, new = datetime(2020, 1, 1), datetime(2099, 1, 1)  # noqa: DTZ001 - naive TIMESTAMP columns
    engine = create_async_engine(named.url)
    policy = PurgePolicy(
        system="named", table=f"{b}.sessions", age_column="created_at", older_than="P30D", schemas=(a, b)
    )
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
            for table in (sessions, namesake):
                rows = [{"id": i, "created_at": old if i % 2 else new} for i in range(1, 11)]
                await connection.execute(insert(table), rows)
        async with engine.connect() as connection:
            with pytest.raises(ValidationFailed, match=f"{a}.session_notes"):
                await prepare_purge(connection, policy)
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: metadata.tables[f"{a}.session_notes"].drop(sync))
        async with engine.connect() as connection:
            prepared = await prepare_purge(connection, policy)

        async def ignore(_: BatchReport) -> None:
            return None

        limits = BatchLimits(max_runtime_seconds=60)
        cutoff = compute_cutoff("P30D")
        outcome = await purge_in_batches(
            engine,
            prepared,
            cutoff=cutoff,
            purge_at=datetime.now(UTC),
            cursor=None,
            limits=limits,
            on_batch=ignore,
        )
        assert outcome.rows == 5
        async with engine.connect() as connection:
            left = (await connection.execute(select(sessions.c.id).order_by(sessions.c.id))).scalars().all()
            untouched = (await connection.execute(select(func.count()).select_from(namesake))).scalar_one()
    finally:
        await engine.dispose()
    assert left == [2, 4, 6, 8, 10]
    assert untouched == 10
