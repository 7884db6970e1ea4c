"""``make demo`` prints two tokens: a calling service's (its own requests and consents only) and an
operator's (manifests, audit, every client's requests, but no request of its own)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from app.config import Settings
from app.demo import DEMO_PERSON, SHOP_URL_VARIABLE, prepare_demo
from tests.conftest import make_settings


@pytest.fixture
def shop_variable() -> Iterator[None]:
    """``prepare_demo`` points the shop variable at its database; leave the environment as found."""
    before = os.environ.get(SHOP_URL_VARIABLE)
    os.environ.pop(SHOP_URL_VARIABLE, None)
    yield
    if before is None:
        os.environ.pop(SHOP_URL_VARIABLE, None)
    else:
        os.environ[SHOP_URL_VARIABLE] = before


@pytest.mark.usefixtures("shop_variable")
async def test_the_demo_tokens_hold_the_service_and_the_operator_scopes(tmp_path: Path) -> None:
    settings: Settings = make_settings(tmp_path)
    info = await prepare_demo(settings, tmp_path)
    service = {"Authorization": f"Bearer {info.token}"}
    operator = {"Authorization": f"Bearer {info.operator_token}"}
    body = {"kind": "access", "identities": {"email": DEMO_PERSON}}
    async with AsyncTestClient(app=create_app(settings)) as client:
        created = await client.post("/v1/requests", json=body, headers={**service, "Idempotency-Key": "t-1"})
        assert created.status_code == 202, created.text
        request_id = created.json()["id"]
        assert (await client.get(f"/v1/requests/{request_id}", headers=service)).status_code == 200

        # The calling service reads no audit log and registers no manifest.
        assert (await client.get("/v1/audit/events", headers=service)).status_code == 403
        manifests = await client.get("/v1/manifests", headers=service)
        assert manifests.status_code == 403

        # The operator sees the service's request and the audit log, and files no request itself.
        assert (await client.get(f"/v1/requests/{request_id}", headers=operator)).status_code == 200
        assert (await client.get("/v1/audit/events", headers=operator)).status_code == 200
        assert (await client.get("/v1/manifests", headers=operator)).status_code == 200
        refused = await client.post("/v1/requests", json=body, headers={**operator, "Idempotency-Key": "t-2"})
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
