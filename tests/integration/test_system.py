"""Probes, metrics, docs and the committed OpenAPI contract."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

from app.asgi import create_app
from app.db.store import upgrade_store
from app.openapi import render_openapi
from tests.conftest import make_settings
from tests.s3_server import S3Server

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


async def test_metrics_follow_prometheus_conventions(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]]
) -> None:
    assert (await client.get("/v1/manifests", headers=auth())).status_code == 200
    text = (await client.get("/metrics")).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    ours = {name: family for name, family in families.items() if name.startswith("lethe_")}
    for name, family in ours.items():
        labels = {label for sample in family.samples for label in sample.labels}
        assert "app_name" not in labels, name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name
        if family.type == "histogram":
            # a base unit, or what a count histogram counts (the group committer's units per batch)
            assert name.endswith(("_seconds", "_bytes", "_units")), f"{name}: a histogram names its unit"
        if name.endswith("_in_progress"):
            assert "status" not in labels, name
    # The registry is the process's: other tests may have answered this route too.
    assert 'lethe_http_requests_total{method="GET",route="/v1/manifests",status="200"} ' in text
    assert 'lethe_http_request_duration_seconds_count{method="GET",route="/v1/manifests"} ' in text
    assert 'lethe_http_requests_in_progress{method="GET",route="/v1/manifests"} 0.0' in text
    assert 'lethe_build_info{version="' in text
    for domain in ("lethe_export_duration_seconds", "lethe_erasure_duration_seconds", "lethe_request_jobs"):
        assert domain in ours
    for retention in ("lethe_retention_rows", "lethe_retention_runs", "lethe_retention_run_failures"):
        assert retention in ours
    assert "lethe_requests_total" not in text, "HTTP metrics are named apart from data-subject requests"


async def test_readyz_is_503_while_the_artifact_directory_is_not_writable(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    engine = create_async_engine(settings.database_url)
    await upgrade_store(engine)
    await engine.dispose()
    blocked = Path(settings.artifacts_dir)
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the directory should be")
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["store"] == "reachable"
        assert body["artifacts"] == "unavailable"
        assert "artifact directory is not writable" in body["detail"]
        assert str(tmp_path) not in body["detail"]
        blocked.unlink()
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["artifacts"] == "writable"


async def test_readyz_checks_the_s3_bucket_without_showing_credentials(
    tmp_path: Path, s3_server: S3Server
) -> None:
    bucket = s3_server.create_bucket()
    settings = make_settings(
        tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", **s3_server.settings(bucket)
    )
    engine = create_async_engine(settings.database_url)
    await upgrade_store(engine)
    await engine.dispose()
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["artifacts"] == "writable"
    missing = make_settings(
        tmp_path,
        database_url=settings.database_url,
        **s3_server.settings(bucket + "-missing"),
    )
    async with AsyncTestClient(app=create_app(missing)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["artifacts"] == "unavailable"
    assert body["detail"].startswith("S3 bucket unreachable")
    secrets = (missing.artifact_s3_access_key_id, missing.artifact_s3_secret_access_key, s3_server.endpoint)
    for secret in secrets:
        assert secret
        assert secret not in response.text
