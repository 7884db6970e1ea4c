"""Probes, metrics, docs and the committed OpenAPI contract."""

from __future__ import annotations

import json
from pathlib import Path

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import create_async_engine

from app.asgi import create_app
from app.db.store import upgrade_store
from app.openapi import render_openapi
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]


async def test_healthz_answers_without_a_token(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_readyz_is_ready_on_a_migrated_store(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["revision"] == response.json()["head"]


async def test_readyz_is_503_until_the_store_is_migrated(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert "lethe database upgrade" in response.json()["detail"]
        engine = create_async_engine(settings.database_url)
        await upgrade_store(engine)
        await engine.dispose()
        assert (await client.get("/readyz")).status_code == 200


async def test_readyz_is_503_when_the_store_is_unreachable(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none")
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["store"] == "unreachable"


async def test_metrics_are_prometheus_text(client: AsyncTestClient[Litestar]) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE" in response.text


async def test_served_spec_equals_the_committed_contract(client: AsyncTestClient[Litestar]) -> None:
    committed = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    served = (await client.get("/schema/openapi.json")).json()
    assert served == committed, "run 'make openapi' and commit openapi/openapi.json"


def test_generated_spec_equals_the_committed_file() -> None:
    assert render_openapi() == (ROOT / "openapi" / "openapi.json").read_text(), (
        "openapi/openapi.json is stale: run 'make openapi'"
    )


async def test_unknown_route_is_problem_json(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "urn:lethe:problem:not-found"
