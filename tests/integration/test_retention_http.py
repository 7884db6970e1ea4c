"""``/v1/retention`` over HTTP: policies from the manifest and the API, dry and real runs, audit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.config import Settings
from app.db.audit import AuditEvent
from app.domain.audit.sequencer import sequence_now
from app.engine.surrogates import hash_key_from_secret, hash_message_prefix
from tests.conftest import make_settings
from tests.integration.retention_support import (
    SHOP_ENV,
    due_sessions,
    engine_for,
    make_target,
    register_shop,
    shop_manifest,
    snapshot,
    target_rows,
)

Client = AsyncTestClient[Litestar]
Auth = Callable[..., dict[str, str]]


@pytest.fixture
async def shop(
    request: pytest.FixtureRequest, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A SQLite shop target registered as system ``shop``."""
    url = await make_target(request, tmp_path, "sqlite")
    monkeypatch.setenv(SHOP_ENV, url)
    await register_shop(settings.database_url)
    return url


async def _policies(client: Client, auth: Auth) -> dict[str, dict[str, Any]]:
    response = await client.get("/v1/retention/policies", headers=auth("retention:read"))
    assert response.status_code == 200, response.text
    return {p["name"]: p for p in response.json()["items"]}


async def test_manifest_policies_are_listed_and_changed_only_in_the_manifest(
    shop: str, client: Client, auth: Auth
) -> None:
    del shop
    policies = await _policies(client, auth)

    assert set(policies) == {"expired-sessions", "old-orders", "soft-sessions"}
    sessions = policies["expired-sessions"]
    assert (sessions["source"], sessions["table"], sessions["action"]) == ("manifest", "sessions", "delete")
    assert sessions["schedule"] == "P1D"
    assert sessions["next_due_at"] is not None
    patched = await client.patch(
        f"/v1/retention/policies/{sessions['id']}", json={"batch_size": 5}, headers=auth("retention:write")
    )
    assert patched.status_code == 409
    assert "comes from the manifest of system 'shop'" in patched.json()["detail"]
    deleted = await client.delete(f"/v1/retention/policies/{sessions['id']}", headers=auth("retention:write"))
    assert deleted.status_code == 409


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "age_column", "an age column is required"),
        ({"age_column": "expired"}, "age_column", "column 'expired' does not exist in table 'sessions'"),
        (
            {"age_column": "expires_at", "filters": [{"column": "colour", "op": "eq", "value": "red"}]},
            "filters[0].column",
            "column 'colour' does not exist",
        ),
        (
            {"table": "orders", "age_column": "placed_at"},
            "action",
            "order_items(order_id) references it with ON DELETE NO ACTION",
        ),
        ({"table": "nope", "age_column": "x"}, "table", "table 'nope' does not exist"),
        ({"age_column": "expires_at", "older_than": "P1X"}, "older_than", "not an ISO 8601 duration"),
        ({"age_column": "expires_at", "older_than": "P99999999Y"}, "older_than", "longer than 1000 years"),
        ({"age_column": "expires_at", "older_than": "P" + "9" * 40 + "D"}, "older_than", "longer than 1000"),
        (
            {"age_column": "expires_at", "schedule": "P99999999Y"},
            "body.schedule",
            "longer than 1000 years",
        ),
    ],
)
async def test_policies_the_target_cannot_honour_are_refused(
    shop: str, client: Client, auth: Auth, body: dict[str, Any], field: str, message: str
) -> None:
    del shop
    payload = {"system": "shop", "name": "bad", "table": "sessions", "older_than": "P30D", **body}
    response = await client.post("/v1/retention/policies", json=payload, headers=auth("retention:write"))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert message in problem["detail"]
    assert problem["errors"][0]["field"] == field


async def test_api_policy_lifecycle_with_dry_and_real_runs(
    shop: str, client: Client, auth: Auth, store_engine: AsyncEngine
) -> None:
    body = {
        "system": "shop",
        "name": "web-sessions",
        "table": "sessions",
        "age_column": "expires_at",
        "older_than": "P30D",
        "filters": [{"column": "kind", "op": "eq", "value": "web"}],
        "batch_size": 4,
    }
    created = await client.post("/v1/retention/policies", json=body, headers=auth("retention:write"))
    assert created.status_code == 201, created.text
    policy = created.json()
    assert policy["source"] == "api"
    again = await client.post("/v1/retention/policies", json=body, headers=auth("retention:write"))
    assert again.status_code == 409

    patched = await client.patch(
        f"/v1/retention/policies/{policy['id']}", json={"batch_size": 6}, headers=auth("retention:write")
    )
    assert patched.status_code == 200
    assert patched.json()["batch_size"] == 6

    run_url = f"/v1/retention/policies/{policy['id']}/run"
    dry = await client.post(run_url, params={"dry_run": "true"}, headers=auth("retention:run"))
    assert dry.status_code == 200, dry.text
    dry_run = dry.json()
    assert dry_run["dry_run"] is True
    assert "DELETE FROM sessions" in dry_run["sql"]
    async with engine_for(shop) as target:
        assert len(await snapshot(target, "sessions")) == 240, "a dry run changes nothing"

    real = await client.post(run_url, params={"dry_run": "false"}, headers=auth("retention:run"))
    assert real.status_code == 200, real.text
    run = real.json()
    assert run["status"] == "completed"
    assert run["rows"] == dry_run["rows"] > 0
    assert run["batches"] >= run["rows"] // 6
    async with engine_for(shop) as target:
        left = await snapshot(target, "sessions")
    purged = {r[0] for r in left} ^ set(range(1, 241))
    assert all(row[2] != "web" or row[0] not in due_sessions(_parse(run["cutoff"])) for row in left)
    assert len(purged) == run["rows"]

    runs = await client.get(
        "/v1/retention/runs", params={"policy_id": policy["id"]}, headers=auth("retention:read")
    )
    assert [r["id"] for r in runs.json()["items"]] == [run["id"], dry_run["id"]]
    await sequence_now(store_engine)
    async with store_engine.connect() as connection:
        events = (
            await connection.execute(
                select(AuditEvent.action, AuditEvent.payload).where(AuditEvent.action.like("retention.%"))
            )
        ).all()
    actions = [e[0] for e in events]
    assert actions == [
        "retention.policy_created",
        "retention.policy_updated",
        "retention.dry_run",
        "retention.run_completed",
    ]
    assert events[-1][1]["rows"] == run["rows"]

    gone = await client.delete(f"/v1/retention/policies/{policy['id']}", headers=auth("retention:write"))
    assert gone.status_code == 204
    history = await client.get("/v1/retention/runs", headers=auth("retention:read"))
    assert run["id"] in [r["id"] for r in history.json()["items"]]


async def test_scopes_are_enforced(shop: str, client: Client, auth: Auth) -> None:
    del shop
    policies = await _policies(client, auth)
    policy_id = policies["old-orders"]["id"]
    denied = await client.post(f"/v1/retention/policies/{policy_id}/run", headers=auth("retention:read"))
    assert denied.status_code == 403
    write = await client.post("/v1/retention/policies", json={}, headers=auth("retention:read"))
    assert write.status_code == 403
    runs = await client.get("/v1/retention/runs", headers=auth("retention:run"))
    assert runs.status_code == 403


async def test_runs_are_paginated(shop: str, client: Client, auth: Auth) -> None:
    del shop
    policies = await _policies(client, auth)
    for _ in range(3):
        response = await client.post(
            f"/v1/retention/policies/{policies['old-orders']['id']}/run", headers=auth("retention:run")
        )
        assert response.status_code == 200
    first = await client.get("/v1/retention/runs", params={"limit": 2}, headers=auth("retention:read"))
    page = first.json()
    assert len(page["items"]) == 2
    second = await client.get(
        "/v1/retention/runs",
        params={"limit": 2, "cursor": page["next_cursor"]},
        headers=auth("retention:read"),
    )
    assert len(second.json()["items"]) == 1
    ids = [r["id"] for r in page["items"] + second.json()["items"]]
    assert len(set(ids)) == 3


def _parse(value: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value)


async def test_the_in_service_scheduler_runs_due_policies(
    shop: str, tmp_path: Path, settings: Settings, auth: Auth
) -> None:
    del shop
    scheduled = make_settings(
        tmp_path, database_url=settings.database_url, workers_enabled="true", retention_poll_seconds="0.2"
    )
    async with AsyncTestClient(app=create_app(scheduled)) as client:
        for _ in range(100):
            response = await client.get("/v1/retention/runs", headers=auth("retention:read"))
            runs = response.json()["items"]
            if runs and runs[0]["status"] == "completed":
                break
            await asyncio.sleep(0.1)
    assert [(r["policy_name"], r["trigger"], r["status"]) for r in runs] == [
        ("expired-sessions", "schedule", "completed")
    ]


async def test_anonymize_with_a_hash_column_uses_the_service_secret(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    client: Client,
    auth: Auth,
) -> None:
    url = await make_target(request, tmp_path, "sqlite")
    monkeypatch.setenv(SHOP_ENV, url)
    await register_shop(settings.database_url, shop_manifest(contact_surrogate="hash"))
    policy = (await _policies(client, auth))["old-orders"]
    run_url = f"/v1/retention/policies/{policy['id']}/run"
    first = await client.post(run_url, params={"dry_run": "false"}, headers=auth("retention:run"))
    assert first.status_code == 200, first.text
    assert first.json()["rows"] > 0
    again = await client.post(run_url, params={"dry_run": "false"}, headers=auth("retention:run"))
    assert again.json()["rows"] == 0  # key-derived: a second run rewrites nothing
    assert settings.audit_key is not None
    key = hash_key_from_secret(settings.audit_key)
    originals = {r["id"]: r["contact_email"] for r in target_rows()["orders"]}
    async with engine_for(url) as target:
        rows = await snapshot(target, "orders")
    hashed = [r for r in rows if r[3] != originals[r[0]]]
    assert len(hashed) == first.json()["rows"]
    for row in hashed:
        assert row[3] == key.digest(f"{hash_message_prefix('orders', 'contact_email')}{row[0]}")
