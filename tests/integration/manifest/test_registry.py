"""The manifest registry over HTTP: immutable versions, no-op re-registration, errors, scopes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.config import Settings
from app.db.audit import AuditEvent
from app.demo import DEMO_MANIFEST
from app.demo.shop import create_shop
from app.domain.audit.sequencer import sequence_now
from tests.conftest import make_settings

YAML = {"Content-Type": "application/yaml"}
Auth = Callable[..., dict[str, str]]


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo shop as a target, reachable through the variable its manifest names."""
    path = tmp_path / "shop.db"
    create_shop(path, people=20)
    monkeypatch.setenv("LETHE_TARGET_SHOP_URL", f"sqlite+aiosqlite:///{path}")
    return path


def _demo_yaml() -> str:
    return DEMO_MANIFEST.read_text(encoding="utf-8")


async def _register(
    client: AsyncTestClient[Litestar], auth: Auth, body: str, headers: dict[str, str] | None = None
) -> dict:  # type: ignore[type-arg]
    response = await client.post("/v1/manifests", content=body, headers={**(headers or YAML), **auth()})
    assert response.status_code in (200, 201), response.text
    return response.json()


async def test_versions_are_immutable_and_unchanged_content_is_a_no_op(
    shop: Path, client: AsyncTestClient[Litestar], auth: Auth, store_engine: AsyncEngine
) -> None:
    first = await _register(client, auth, _demo_yaml())
    assert first["created"] is True
    assert first["version"]["version"] == 1
    assert first["version"]["created_by"] == "test-operator"
    assert first["risks"] == []

    again = await client.post("/v1/manifests", content=_demo_yaml(), headers={**YAML, **auth()})
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["version"]["version"] == 1

    as_json = json.dumps(first["version"]["manifest"])
    same = await _register(client, auth, as_json, {"Content-Type": "application/json"})
    assert (same["created"], same["version"]["content_hash"]) == (False, first["version"]["content_hash"])

    changed = await _register(
        client, auth, _demo_yaml().replace("purpose: product reviews", "purpose: reviews")
    )
    assert (changed["created"], changed["version"]["version"]) == (True, 2)

    old = (await client.get("/v1/manifests/shop?version=1", headers=auth("manifests:read"))).json()
    assert old["content_hash"] == first["version"]["content_hash"]
    assert old["manifest"]["tables"]["comments"]["purpose"] == "product reviews"
    latest = (await client.get("/v1/manifests/shop", headers=auth("manifests:read"))).json()
    assert latest["version"] == 2
    assert latest["manifest"]["tables"]["comments"]["purpose"] == "reviews"

    listed = (await client.get("/v1/manifests", headers=auth("manifests:read"))).json()
    assert [(m["system"], m["version"]) for m in listed["items"]] == [("shop", 2)]

    await sequence_now(store_engine)
    async with store_engine.connect() as connection:
        events = (
            await connection.execute(
                select(AuditEvent.action, AuditEvent.actor, AuditEvent.system, AuditEvent.payload)
                .where(AuditEvent.action == "manifest.registered")
                .order_by(AuditEvent.seq)
            )
        ).all()
    assert [(e.actor, e.system, e.payload["version"]) for e in events] == [
        ("test-operator", "shop", 1),
        ("test-operator", "shop", 2),
    ]  # unchanged content: no event
    assert events[0].payload["content_hash"] == first["version"]["content_hash"]


async def test_list_is_paginated_by_system(shop: Path, client: AsyncTestClient[Litestar], auth: Auth) -> None:
    for system in ("shop", "shop-eu", "shop-us"):
        await _register(client, auth, _demo_yaml().replace("system: shop", f"system: {system}"))
    page = (await client.get("/v1/manifests?limit=2", headers=auth())).json()
    assert [m["system"] for m in page["items"]] == ["shop", "shop-eu"]
    rest = (await client.get(f"/v1/manifests?limit=2&cursor={page['next_cursor']}", headers=auth())).json()
    assert [m["system"] for m in rest["items"]] == ["shop-us"]
    assert rest["next_cursor"] is None


async def test_unknown_system_and_version_are_404(
    shop: Path, client: AsyncTestClient[Litestar], auth: Auth
) -> None:
    missing = await client.get("/v1/manifests/crm", headers=auth())
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert "'crm'" in missing.json()["detail"]
    await _register(client, auth, _demo_yaml())
    assert (await client.get("/v1/manifests/shop?version=7", headers=auth())).status_code == 404
    assert (await client.post("/v1/manifests/crm/validate", headers=auth())).status_code == 404


async def test_malformed_manifest_is_422_with_the_key_path(
    shop: Path, client: AsyncTestClient[Litestar], auth: Auth
) -> None:
    body = _demo_yaml().replace(
        "strategy: delete\n    on_outside_reference", "strategy: shred\n    on_outside_reference"
    )
    response = await client.post("/v1/manifests", content=body, headers={**YAML, **auth()})
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "urn:lethe:problem:manifest-invalid"
    assert problem["errors"][0]["field"] == "tables.addresses.strategy"
    syntax = await client.post("/v1/manifests", content="system: [shop", headers={**YAML, **auth()})
    assert syntax.status_code == 422
    assert syntax.json()["errors"][0]["field"].startswith("line ")


async def test_manifest_that_does_not_fit_the_target_is_422(
    shop: Path, client: AsyncTestClient[Litestar], auth: Auth
) -> None:
    body = _demo_yaml().replace("      body: {category", "      text: {category")
    response = await client.post("/v1/manifests", content=body, headers={**YAML, **auth()})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "tables.comments.columns.text", "message": "column 'comments.text' does not exist"}
    ]
    assert (await client.get("/v1/manifests/shop", headers=auth())).status_code == 404


async def test_scopes_are_enforced(shop: Path, client: AsyncTestClient[Litestar], auth: Auth) -> None:
    no_token = await client.post("/v1/manifests", content=_demo_yaml(), headers=YAML)
    assert no_token.status_code == 401
    read_only = await client.post(
        "/v1/manifests", content=_demo_yaml(), headers={**YAML, **auth("manifests:read")}
    )
    assert read_only.status_code == 403
    assert read_only.json()["type"] == "urn:lethe:problem:insufficient-scope"
    assert (await client.get("/v1/manifests", headers=auth("audit:read"))).status_code == 403
    assert (await client.get("/v1/manifests")).status_code == 401


async def test_validate_rechecks_the_live_target(
    shop: Path, client: AsyncTestClient[Litestar], auth: Auth
) -> None:
    await _register(client, auth, _demo_yaml())
    clean = (await client.post("/v1/manifests/shop/validate", headers=auth("manifests:read"))).json()
    assert (clean["valid"], clean["errors"], clean["findings"]) == (True, [], [])
    with sqlite3.connect(shop) as connection:
        connection.execute("CREATE TABLE newsletter (id INTEGER PRIMARY KEY, email VARCHAR(120))")
        connection.execute("ALTER TABLE comments RENAME COLUMN body TO content")
    report = (await client.post("/v1/manifests/shop/validate", headers=auth("manifests:read"))).json()
    assert report["valid"] is False
    assert [e["path"] for e in report["errors"]] == ["tables.comments.columns.body"]
    assert [(f["table"], f["column"]) for f in report["findings"]] == [
        ("comments", "content"),
        ("newsletter", "email"),
    ]


async def test_target_down_is_503_naming_the_system(
    tmp_path: Path, client: AsyncTestClient[Litestar], auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LETHE_TARGET_SHOP_URL", f"sqlite+aiosqlite:///{tmp_path / 'gone.db'}")
    response = await client.post("/v1/manifests", content=_demo_yaml(), headers={**YAML, **auth()})
    assert response.status_code == 503
    assert response.json()["type"] == "urn:lethe:problem:target-unavailable"
    assert "'shop'" in response.json()["detail"]
    monkeypatch.setenv("LETHE_TARGET_SHOP_URL", "postgresql://lethe@127.0.0.1:9/shop")
    refused = await client.post("/v1/manifests", content=_demo_yaml(), headers={**YAML, **auth()})
    assert refused.status_code == 503
    assert "'shop'" in refused.json()["detail"]


async def test_manifests_dir_registers_at_start_up_once(
    tmp_path: Path, settings: Settings, auth: Auth
) -> None:
    directory = tmp_path / "manifests"
    directory.mkdir()
    (directory / "shop.yaml").write_text(_demo_yaml(), encoding="utf-8")
    configured = make_settings(tmp_path, database_url=settings.database_url, manifests_dir=str(directory))
    for _ in range(2):
        async with AsyncTestClient(app=create_app(configured)) as client:
            body = (await client.get("/v1/manifests/shop", headers=auth())).json()
            assert (body["version"], body["created_by"]) == (1, "manifests-dir")
    (directory / "shop.yaml").write_text(_demo_yaml().replace("P10Y", "P11Y"), encoding="utf-8")
    async with AsyncTestClient(app=create_app(configured)) as client:
        assert (await client.get("/v1/manifests/shop", headers=auth())).json()["version"] == 2
