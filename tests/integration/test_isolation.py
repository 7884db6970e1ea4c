"""Requests belong to the client that created them; approval needs a second principal."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from app.lib.auth import ALL_SCOPES
from tests.conftest import make_settings, store_engine_for
from tests.integration.requests_support import SUBJECT_EMAIL, TARGET_ENV, create_crm, drain, register_crm

Headers = Callable[..., dict[str, str]]
CLIENT_SCOPES = [s for s in ALL_SCOPES if s != "requests:admin"]
"""Everything a calling service could hold except seeing other clients' requests."""
BODIES: dict[str, Any] = {
    "extend": {"months": 1, "reason": "complex request"},
    "complete": {},
    "fail": {"reason": "x"},
    "notified": {},
}
"""A valid body for the routes that need one (so the answer is about ownership)."""


@pytest.fixture
async def setup(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch, token: Callable[..., str]
) -> AsyncIterator[tuple[AsyncTestClient[Litestar], Any, Headers]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    await create_crm(url)
    monkeypatch.setenv(TARGET_ENV, url)
    settings = make_settings(tmp_path, database_url=store_url, approval_required="erasure")

    def auth(client_id: str, *scopes: str) -> dict[str, str]:
        minted = token(*(scopes or CLIENT_SCOPES), sub=client_id, client_id=client_id)
        return {"Authorization": f"Bearer {minted}"}

    async with AsyncTestClient(app=create_app(settings)) as client:
        await register_crm(client, auth("operator", "manifests:write", "manifests:read"))
        mailer = {
            "kind": "external",
            "system": "mailer",
            "purpose": "newsletters",
            "legal_basis": "consent",
            "identities": ["email"],
        }
        registered = await client.post(
            "/v1/manifests", json=mailer, headers=auth("operator", "manifests:write")
        )
        assert registered.status_code == 201, registered.text
        yield client, settings, auth


def _id_routes(app: Litestar) -> list[tuple[str, str]]:
    """Every (method, path) of the app whose path takes a request id."""
    return [
        (method, route.path)
        for route in app.routes
        if "{request_id:uuid}" in route.path
        for method in sorted(getattr(route, "methods", ()))
        if method not in ("HEAD", "OPTIONS")
    ]


async def test_another_client_gets_404_on_every_route_that_takes_an_id(setup: Any) -> None:
    client, settings, auth = setup
    access = await client.post(
        "/v1/requests", json={"kind": "access", "identities": {"email": SUBJECT_EMAIL}}, headers=auth("a")
    )
    erasure = await client.post(
        "/v1/requests", json={"kind": "erasure", "identities": {"email": SUBJECT_EMAIL}}, headers=auth("a")
    )
    assert erasure.json()["status"] == "awaiting_approval"
    engine = store_engine_for(settings.database_url)
    ids = [access.json()["id"], erasure.json()["id"]]
    try:
        await drain(settings, engine)
        done = await client.post(f"/v1/requests/{ids[0]}/systems/mailer/complete", json={}, headers=auth("a"))
        assert done.status_code == 200, done.text
        await drain(settings, engine)  # the last report queues the export with every system's part
    finally:
        await engine.dispose()
    assert (await client.get(f"/v1/requests/{ids[0]}/export", headers=auth("a"))).status_code == 200

    routes = _id_routes(client.app)
    assert {path.rsplit("/", 1)[-1] for _, path in routes} >= {
        "{request_id:uuid}",
        "plan",
        "export",
        "approve",
        "reject",
        "cancel",
        "extend",
        "identities",
        "complete",
        "fail",
        "notified",
    }
    for request_id in ids:
        for method, path in routes:
            url = re.sub(r"\{request_id:uuid\}", request_id, path).replace("{system:str}", "mailer")
            url = url.replace("{name:str}", "Mail provider")
            body = BODIES.get(path.rsplit("/", 1)[-1])
            answer = await client.request(method, url, json=body, headers=auth("b"))
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["type"] == "urn:lethe:problem:not-found"

    listed = (await client.get("/v1/requests", headers=auth("b"))).json()["items"]
    assert listed == []
    own = (await client.get("/v1/requests", headers=auth("a"))).json()["items"]
    assert sorted(item["id"] for item in own) == sorted(ids)
    admin = auth("dpo", "requests:read", "requests:admin")
    assert len((await client.get("/v1/requests", headers=admin)).json()["items"]) == 2
    assert (await client.get(f"/v1/requests/{ids[0]}/export", headers=admin)).status_code == 200
    # Nothing changed for the owner: the erasure still waits for a decision.
    assert (await client.get(f"/v1/requests/{ids[1]}", headers=auth("a"))).json()["status"] == (
        "awaiting_approval"
    )


async def test_the_creator_cannot_approve_its_own_request(setup: Any) -> None:
    client, _, auth = setup
    held = await client.post(
        "/v1/requests", json={"kind": "erasure", "identities": {"email": SUBJECT_EMAIL}}, headers=auth("a")
    )
    url = f"/v1/requests/{held.json()['id']}/approve"
    own = await client.post(url, headers=auth("a", "requests:approve", "requests:admin"))
    assert own.status_code == 403
    assert own.json()["type"] == "urn:lethe:problem:approval-by-creator"
    other = await client.post(url, headers=auth("dpo", "requests:approve", "requests:admin"))
    assert other.status_code == 200
    assert other.json()["status"] == "queued"


async def test_four_eyes_can_be_turned_off(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch, token: Callable[..., str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    await create_crm(url)
    monkeypatch.setenv(TARGET_ENV, url)
    settings = make_settings(
        tmp_path, database_url=store_url, approval_required="erasure", approval_four_eyes="false"
    )
    headers = {"Authorization": f"Bearer {token(sub='solo', client_id='solo')}"}
    async with AsyncTestClient(app=create_app(settings)) as client:
        await register_crm(client, headers)
        held = await client.post(
            "/v1/requests", json={"kind": "erasure", "identities": {"email": SUBJECT_EMAIL}}, headers=headers
        )
        approved = await client.post(f"/v1/requests/{held.json()['id']}/approve", headers=headers)
        assert approved.status_code == 200
