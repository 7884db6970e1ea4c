"""Identities that cannot match are refused at the API, naming the identity."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from tests.conftest import make_settings
from tests.integration.requests_support import SUBJECT_EMAIL, TARGET_ENV, create_crm, register_crm


@pytest.mark.parametrize(
    ("identities", "field"),
    [
        pytest.param({"email": "alice\x00@example.com"}, "body.identities.email", id="nul-byte"),
        pytest.param({"email": "alice@example.com\n"}, "body.identities.email", id="newline"),
        pytest.param({"user_id": "2147483648"}, "body.identities.user_id", id="beyond-integer"),
        pytest.param({"user_id": "-99999999999999999999999"}, "body.identities.user_id", id="huge"),
        pytest.param({"user_id": "one"}, "body.identities.user_id", id="not-a-number"),
    ],
)
async def test_identity_the_key_column_cannot_hold_is_422(
    tmp_path: Path,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    token: Callable[..., str],
    identities: dict[str, str],
    field: str,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    await create_crm(url)
    monkeypatch.setenv(TARGET_ENV, url)
    headers = {"Authorization": f"Bearer {token()}"}
    async with AsyncTestClient(app=create_app(make_settings(tmp_path, database_url=store_url))) as client:
        await register_crm(client, headers)
        refused = await client.post(
            "/v1/requests", json={"kind": "access", "identities": identities}, headers=headers
        )
        assert refused.status_code == 422, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == [field]
        fine = {"kind": "access", "identities": {"email": SUBJECT_EMAIL, "user_id": "2147483647"}}
        assert (await client.post("/v1/requests", json=fine, headers=headers)).status_code == 202
