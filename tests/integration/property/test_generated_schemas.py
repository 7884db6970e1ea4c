"""Property: on any generated schema, with the scaffold's manifest and random strategies, either
validation refuses naming a table and a column, or the erasure passes the checker.

A third outcome is allowed because the design asks for it: validation reports a foreign key from
outside the subject's data into rows erasure deletes as a *risk*, and the erasure then fails
naming that constraint, with nothing changed in the target.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from sqlalchemy import MetaData, event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.asgi import create_app
from app.config import Settings
from app.db.store import create_store_engine, upgrade_store
from app.engine.targets import TargetRegistry
from app.manifest.loading import load_manifest
from app.manifest.model import Connection
from tests.conftest import UNLIMITED_RATES, make_settings
from tests.integration.erasure_checker import erasure_findings, take_snapshot
from tests.integration.property.generated import Design, build_metadata, designs, rows_for
from tests.integration.property.manifests import Choices, randomized_manifest, repair
from tests.integration.requests_support import drain
from tests.servers import DatabaseServer

ENV = "LETHE_TARGET_GENERATED_URL"
EXAMPLES = {"sqlite": 12, "postgresql": 5, "mysql": 5}
"""Bounded so the whole property test stays near a minute on two cores."""
_RUN = uuid.uuid4().hex[:8]
NAMED = {"postgresql": ("crm", "billing"), "mysql": (f"lethe_p{_RUN}_crm", f"lethe_p{_RUN}_billing")}
LAYOUTS = ("one schema", "named schemas")
REPAIRS = 4
"""Refused manifests are repaired where validation pointed (that many times) and registered again."""


def _aside(coroutine: Any) -> Any:
    """Run ``coroutine`` on its own loop in another thread (hypothesis examples are synchronous)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _migrated_store(path: Path) -> str:
    url = f"sqlite+aiosqlite:///{path / 'store.db'}"
    engine = create_async_engine(url)
    try:
        await upgrade_store(engine)
    finally:
        await engine.dispose()
    return url


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding one migrated SQLite service store for every example of a module run."""
    path = tmp_path_factory.mktemp("property-store")
    _aside(_migrated_store(path))
    return path


async def _target(
    kind: str, directory: Path, server: DatabaseServer | None, design: Design
) -> tuple[str, str | None]:
    """A fresh target database with the design's named schemas; its URL and default schema."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{directory / 'target.db'}", None
    assert server is not None
    url = await server.create_database("lethe_generated")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for schema in design.schemas[1:]:
                if kind == "postgresql":
                    await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
                else:
                    await connection.execute(text(f"DROP DATABASE IF EXISTS `{schema}`"))
                    await connection.execute(text(f"CREATE DATABASE `{schema}`"))
                    if schema not in server.created:
                        server.created.append(schema)
            default = (
                await connection.execute(
                    text("SELECT current_schema()" if kind == "postgresql" else "SELECT database()")
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    return url, str(default)


async def _fill(engine: AsyncEngine, metadata: MetaData, rows: dict[str, list[dict[str, Any]]]) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        for table in metadata.sorted_tables:
            if rows.get(table.name):
                await connection.execute(insert(table), rows[table.name])


def _named_precisely(errors: list[dict[str, str]], metadata: MetaData) -> bool:
    """Every error names a table of the schema in its message, and the column its key path points
    at (``tables.person.columns.email.strategy`` must say ``email``); errors about a whole table
    (its link, its strategy) name the table and the link's hop."""
    tables = {t.name: {c.name for c in t.columns} for t in metadata.tables.values()}
    for error in errors:
        named = [t for t in tables if t in error["message"]]
        if not named:
            return False
        parts = error["field"].split(".")
        if "columns" in parts[:-1]:
            column = parts[parts.index("columns") + 1]
            if column not in error["message"]:
                return False
    return True


async def _example(
    kind: str,
    directory: Path,
    server: DatabaseServer | None,
    store_url: str,
    design: Design,
    rows: dict[str, list[dict[str, Any]]],
    choices: list[int],
    victim: int,
) -> str:
    url, default_schema = await _target(kind, directory, server, design)
    os.environ[ENV] = url
    metadata = build_metadata(design, kind, default_schema if kind == "mysql" else None)
    engine = create_async_engine(url)
    if kind == "sqlite":
        event.listen(engine.sync_engine, "connect", lambda c, _: c.execute("PRAGMA foreign_keys=ON"))
    app_settings: Settings = make_settings(directory, database_url=store_url, rate_limits=UNLIMITED_RATES)
    targets = TargetRegistry(app_settings)
    try:
        await _fill(engine, metadata, rows)
        named = tuple(s for s in design.schemas if s is not None)  # besides the default schema
        connection = Connection(env=ENV, schemas=named) if named else Connection(env=ENV)
        system = f"generated-{uuid.uuid4().hex[:12]}"  # a system of its own: no earlier tombstone applies
        schema = await targets.reflect(system, connection)
        document = randomized_manifest(schema, design, system, ENV, Choices(choices))
        return await _check(kind, app_settings, engine, metadata, document, design, rows, victim)
    finally:
        await targets.dispose()
        await engine.dispose()
        os.environ.pop(ENV, None)


async def _check(
    kind: str,
    app_settings: Settings,
    engine: AsyncEngine,
    metadata: MetaData,
    document: dict[str, Any],
    design: Design,
    rows: dict[str, list[dict[str, Any]]],
    victim: int,
) -> str:
    schemas = tuple(design.schemas)
    async with AsyncTestClient(app=create_app(app_settings)) as client:
        from app.lib.auth import ALL_SCOPES, mint_token

        headers = {
            "Authorization": f"Bearer {mint_token(app_settings, sub='property', scopes=list(ALL_SCOPES))}"
        }
        refused = 0
        registered = await client.post("/v1/manifests", json=document, headers=headers)
        while registered.status_code == 422 and refused < REPAIRS:
            errors = registered.json()["errors"]
            assert errors, registered.text
            assert _named_precisely(errors, metadata), registered.text
            refused += 1
            repair(document, errors)  # then the repaired manifest is held to the same property
            registered = await client.post("/v1/manifests", json=document, headers=headers)
        if registered.status_code == 422:
            return "refused by validation"
        assert registered.status_code in (200, 201), registered.text
        manifest = load_manifest(json.dumps(document), "json")
        subject = next(r for r in rows["person"] if r["id"] == victim)
        before = await take_snapshot(engine, schemas)
        created = await client.post(
            "/v1/requests",
            json={
                "kind": "erasure",
                "identities": {"email": subject["email"]},
                "systems": [document["system"]],
            },
            headers=headers,
        )
        assert created.status_code == 202, created.text
        store = create_store_engine(app_settings)
        try:
            await drain(app_settings, store)
        finally:
            await store.dispose()
        body = (await client.get(created.headers["location"], headers=headers)).json()
        after = await take_snapshot(engine, schemas)
        if body["status"] == "failed":
            risks = [r for r in registered.json()["risks"] if r["kind"] == "outside_reference"]
            assert risks, (body["failure_reason"], registered.json()["risks"])
            assert after == before, body["failure_reason"]
            assert any((r["table"] or "") in (body["failure_reason"] or "") for r in risks), (
                body["failure_reason"],
                risks,
            )
            return "failed on an outside reference, nothing changed"
        assert body["status"] == "completed", body
        findings = await erasure_findings(engine, manifest, (str(victim),), before, after)
        assert not findings, findings
        return "erased and checked"


def _property(
    kind: str,
    named: tuple[str, ...],
    store: Path,
    server: DatabaseServer | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Run the property; at least a quarter of the examples must reach an erasure (else the
    generator or the random manifests only probe validation)."""
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES[kind],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: each example costs seconds
    )
    @given(
        design=designs(named),
        data=st.data(),
        choices=st.lists(st.integers(0, 1000), min_size=40, max_size=40),
    )
    def run(design: Design, data: st.DataObject, choices: list[int]) -> None:
        rows = rows_for(data, design, kind)
        victim = data.draw(st.integers(1, design.people))
        directory = tmp_path_factory.mktemp(f"property-{kind}")
        store_url = f"sqlite+aiosqlite:///{store / 'store.db'}"
        outcome = _aside(_example(kind, directory, server, store_url, design, rows, choices, victim))
        hypothesis.event(outcome)
        outcomes[outcome] += 1

    run()
    assert outcomes["erased and checked"] * 4 >= EXAMPLES[kind], outcomes


def test_erasure_holds_on_generated_sqlite_schemas(
    store: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SQLite: one schema (attached databases are not part of a manifest's connection)."""
    _property("sqlite", (), store, None, tmp_path_factory)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_erasure_holds_on_generated_postgresql_schemas(
    layout: str, store: Path, postgres_server: DatabaseServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    named = NAMED["postgresql"] if layout == "named schemas" else ()
    _property("postgresql", named, store, postgres_server, tmp_path_factory)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_erasure_holds_on_generated_mariadb_schemas(
    layout: str, store: Path, mysql_server: DatabaseServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    named = NAMED["mysql"] if layout == "named schemas" else ()
    _property("mysql", named, store, mysql_server, tmp_path_factory)
