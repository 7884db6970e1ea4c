"""Erasure through the HTTP API and the worker, on SQLite, PostgreSQL and MariaDB targets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings
from app.db.audit import AuditEvent, ErasureTombstone
from app.domain.audit.sequencer import sequence_now
from tests.integration.erasure import schema
from tests.integration.requests_support import drain, target_url

Headers = Callable[..., dict[str, str]]
ENV = "LETHE_TARGET_ERASURETEST_URL"


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
async def shop(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A seeded target of each dialect, named by the manifest's environment variable."""
    url = await target_url(request.param, tmp_path, request)
    engine = create_async_engine(url)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", lambda c, _: c.execute("PRAGMA foreign_keys=ON"))
    await schema.create_target(engine, 6)
    monkeypatch.setenv(ENV, url)
    yield engine
    await engine.dispose()


async def _register(client: AsyncTestClient[Litestar], auth: Headers, **overrides: Any) -> None:
    document = msgspec.to_builtins(schema.manifest(**overrides))
    response = await client.post("/v1/manifests", json=document, headers=auth())
    assert response.status_code in (200, 201), response.text


async def _erase(client: AsyncTestClient[Litestar], auth: Headers, **body: Any) -> str:
    response = await client.post("/v1/requests", json={"kind": "erasure", **body}, headers=auth())
    assert response.status_code == 202, response.text
    return str(response.headers["location"])


async def _actions(store: AsyncEngine, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    await sequence_now(store)
    async with store.connect() as conn:
        rows = await conn.execute(
            select(AuditEvent.action, AuditEvent.payload)
            .where(AuditEvent.request_id == request_id)
            .order_by(AuditEvent.seq)
        )
        return [(r[0], r[1]) for r in rows]


async def test_dry_run_stops_at_the_plan(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    shop: AsyncEngine,
) -> None:
    await _register(client, auth)
    before = await schema.snapshot(shop)
    location = await _erase(client, auth, identities={"email": "person1@example.com"}, dry_run=True)
    await drain(settings, store_engine)
    body = (await client.get(location, headers=auth("requests:read"))).json()
    assert body["status"] == "completed", body
    assert await schema.snapshot(shop) == before
    plan = (await client.get(f"{location}/plan", headers=auth("requests:read"))).json()
    assert plan["dry_run"] is True
    system = plan["systems"][0]
    assert system["source"] == "recorded"
    tables = {t["table"]: t for t in system["tables"]}
    assert tables["addresses"]["strategy"] == "delete"
    assert tables["addresses"]["rows"] == 1
    assert tables["orders"]["legal_basis"] == "tax law: invoices kept 10 years"
    assert all("person1" not in sql for t in system["tables"] for sql in t["sql"])
    forbidden = await client.get(f"{location}/plan", headers=auth("requests:write"))
    assert forbidden.status_code == 403


async def test_erasure_end_to_end_then_no_op(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    shop: AsyncEngine,
) -> None:
    await _register(client, auth)
    before = await schema.snapshot(shop)
    location = await _erase(client, auth, identities={"email": "person1@example.com"})
    live = (await client.get(f"{location}/plan", headers=auth("requests:read"))).json()
    assert live["systems"][0]["source"] == "live"
    assert live["systems"][0]["rows"] > 0
    await drain(settings, store_engine)
    body = (await client.get(location, headers=auth("requests:read"))).json()
    assert body["status"] == "completed", body
    after = await schema.snapshot(shop)
    assert [k for k in after["addresses"] if k == (1,)] == []
    assert after["users"][(1,)][1] != before["users"][(1,)][1]
    for table in ("addresses", "orders", "order_items", "device_logs"):
        for key, row in before[table].items():
            if key[0] not in (1, 10, 11, 100, 110):
                assert after[table][key] == row
    actions = await _actions(store_engine, body["id"])
    completed = [p for a, p in actions if a == "erasure.system_completed"]
    assert len(completed) == 1
    assert completed[0]["verification"] == {
        "rows_left": 0,
        "values_left": 0,
        "mentions_left": 0,
        "independent_rows_left": 0,
        "verified": True,
    }
    assert completed[0]["deleted"]["addresses"] == 1
    assert [a for a, _ in actions].count("request.completed") == 1
    async with store_engine.connect() as conn:
        tombstones = (await conn.execute(select(ErasureTombstone.system))).all()
    assert tombstones == [("shop",)]

    again = await _erase(client, auth, identities={"user_id": "1"})
    await drain(settings, store_engine)
    assert (await client.get(again, headers=auth())).json()["status"] == "completed"
    assert await schema.snapshot(shop) == after
    repeat = [
        p
        for a, p in await _actions(store_engine, again.rsplit("/", 1)[-1])
        if a == "erasure.system_completed"
    ]
    # The repeat executed its plan (no tombstone short-cut) and found nothing left to change.
    assert "already_erased" not in repeat[0]
    assert repeat[0]["verification"]["verified"] is True
    assert sum(repeat[0]["deleted"].values()) == 0


async def test_rows_restored_after_an_erasure_are_erased_again(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    shop: AsyncEngine,
) -> None:
    """A backup restore or re-import brings the subject back: a new erasure erases it again,
    although a tombstone of the first erasure exists."""
    await _register(client, auth)
    before = await schema.snapshot(shop)
    first = await _erase(client, auth, identities={"email": "person2@example.com"})
    await drain(settings, store_engine)
    assert (await client.get(first, headers=auth())).json()["status"] == "completed"
    restored = {"users": (2,), "addresses": (2,), "comments": (20,), "device_logs": (2,)}
    async with shop.begin() as conn:
        for table in schema.TABLES:
            if table.name == "users":
                values = dict(zip(table.c.keys(), before["users"][(2,)], strict=True))
                await conn.execute(table.update().where(table.c.id == 2).values(values))
            elif table.name in restored:
                row = dict(zip(table.c.keys(), before[table.name][restored[table.name]], strict=True))
                await conn.execute(insert(table).values(row))
    again = await _erase(client, auth, identities={"email": "person2@example.com"})
    await drain(settings, store_engine)
    assert (await client.get(again, headers=auth())).json()["status"] == "completed"
    after = await schema.snapshot(shop)
    assert (2,) not in after["addresses"]
    assert (20,) not in after["comments"]
    assert (2,) not in after["device_logs"]
    assert "person2@example.com" not in after["users"][(2,)]
    assert "Person Number 2" not in after["users"][(2,)]
    payload = [
        p for a, p in await _actions(store_engine, again.rsplit("/", 1)[-1]) if a.endswith("completed")
    ]
    assert payload[0]["deleted"]["addresses"] == 1


async def test_identity_match_rule_finds_the_stored_subject(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    shop: AsyncEngine,
) -> None:
    """E-mail identities are case-folded and trimmed in SQL and in the reference alike; an
    identity declared ``exact`` is compared byte for byte."""
    await _register(client, auth)
    dry = await _erase(client, auth, identities={"email": "  Person3@Example.COM "}, dry_run=True)
    lower = await _erase(client, auth, identities={"email": "person3@example.com"}, dry_run=True)
    await drain(settings, store_engine)
    shown = (await client.get(dry, headers=auth("requests:read"))).json()
    assert shown["status"] == "completed", shown
    assert shown["systems"][0]["not_found"] is False
    tables = {
        t["table"]: t["rows"]
        for t in (await client.get(f"{dry}/plan", headers=auth("requests:read"))).json()["systems"][0][
            "tables"
        ]
    }
    assert tables["addresses"] == 1
    # Person 3 sent one message and received one: the plan counts the rows the UPDATE changes.
    assert tables["messages"] == 2
    other = (await client.get(lower, headers=auth("requests:read"))).json()
    assert shown["subject_ref"] == other["subject_ref"]

    exact = schema.MANIFEST["subject"] | {
        "identities": {"email": {"column": "email", "match": "exact"}, "user_id": "id"}
    }
    document = msgspec.to_builtins(schema.manifest()) | {"subject": exact}
    response = await client.post("/v1/manifests", json=document, headers=auth())
    assert response.status_code == 201, response.text
    strict = await _erase(client, auth, identities={"email": "Person3@Example.COM"}, dry_run=True)
    await drain(settings, store_engine)
    assert (await client.get(strict, headers=auth("requests:read"))).json()["systems"][0]["not_found"] is True


async def test_outside_reference_fails_the_request_cleanly(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    shop: AsyncEngine,
) -> None:
    await _register(client, auth)
    async with shop.begin() as conn:
        await conn.execute(
            insert(schema.comments), [{"id": 999, "user_id": 2, "parent_id": 10, "body": "reply"}]
        )
    before = await schema.snapshot(shop)
    location = await _erase(client, auth, identities={"user_id": "1"})
    await drain(settings, store_engine)
    body = (await client.get(location, headers=auth())).json()
    assert body["status"] == "failed"
    assert "fk_comments_parent" in body["failure_reason"]
    assert "'comments'" in body["failure_reason"]
    assert await schema.snapshot(shop) == before


async def test_an_erasure_deletes_earlier_exports_of_its_subject(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    shop: AsyncEngine,
) -> None:
    """An export made before the erasure (by another identity of the same person) is deleted
    when the erasure completes: its download answers 410 with a problem type; another person's
    export stays downloadable."""
    await _register(client, auth)
    exports = []
    for identities in ({"user_id": "4"}, {"email": "person5@example.com"}):
        response = await client.post(
            "/v1/requests", json={"kind": "access", "identities": identities}, headers=auth()
        )
        assert response.status_code == 202, response.text
        exports.append(str(response.headers["location"]))
    await drain(settings, store_engine)
    for location in exports:
        assert (await client.get(f"{location}/export", headers=auth("requests:read"))).status_code == 200
    erasure = await _erase(client, auth, identities={"email": " PERSON4@example.com"})
    await drain(settings, store_engine)
    # The audit search by the identity the export used finds the erasure made by e-mail too.
    found = await client.get(
        "/v1/audit/events", params={"subject_type": "user_id", "subject": "4"}, headers=auth("audit:read")
    )
    assert found.status_code == 200, found.text
    requests = {e["request_id"] for e in found.json()["items"]}
    assert {exports[0].rsplit("/", 1)[-1], erasure.rsplit("/", 1)[-1]} <= requests
    assert exports[1].rsplit("/", 1)[-1] not in requests
    gone = await client.get(f"{exports[0]}/export?format=zip", headers=auth("requests:read"))
    assert gone.status_code == 410, gone.text
    assert gone.headers["content-type"].startswith("application/problem+json")
    assert gone.json()["type"] == "urn:lethe:problem:export-erased"
    assert list(Path(settings.artifacts_dir).glob(f"{exports[0].rsplit('/', 1)[-1]}.*")) == []
    kept = await client.get(f"{exports[1]}/export", headers=auth("requests:read"))
    assert kept.status_code == 200
    actions = [a for a, _ in await _actions(store_engine, exports[0].rsplit("/", 1)[-1])]
    assert actions[-1] == "request.export_erased"
