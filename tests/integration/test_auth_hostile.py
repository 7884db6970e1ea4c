"""Hostile tokens are 401 (never 500, never extra scopes), and the access log says 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.config import Settings

PROTECTED = "/v1/audit/events"  # scope audit:read


def _token(settings: Settings, headers: dict[str, Any] | None = None, **claims: object) -> str:
    now = int(time.time())
    body: dict[str, object] = {
        "sub": "svc",
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
        "iat": now,
        "exp": now + 300,
        "scope": "audit:read",
    }
    body.update(claims)
    assert settings.jwt_secret is not None
    # Signed by hand: PyJWT refuses to encode some of these headers.
    head = _segment({"alg": "HS256", "typ": "JWT", **(headers or {})})
    signing_input = f"{head}.{_segment(body)}"
    mac = hmac.new(settings.jwt_secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _segment(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("headers", "claims"),
    [
        pytest.param(None, {"scope": 123}, id="scope-number"),
        pytest.param(None, {"scope": {"audit:read": True}}, id="scope-object"),
        pytest.param(None, {"scope": ["audit:read", 7]}, id="scope-list-with-number"),
        pytest.param(None, {"sub": 42}, id="sub-number"),
        pytest.param(None, {"client_id": {"a": 1}}, id="client-id-object"),
        pytest.param({"kid": 123}, {}, id="kid-number"),
        pytest.param({"kid": ["a"]}, {}, id="kid-list"),
        pytest.param({"crit": ["exp-ext"], "exp-ext": 1}, {}, id="crit-unknown"),
        pytest.param(None, {"pad": "x" * 9000}, id="oversized"),
    ],
)
async def test_hostile_token_is_401(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    headers: dict[str, Any] | None,
    claims: dict[str, object],
) -> None:
    token = _token(settings, headers, **claims)
    response = await client.get(PROTECTED, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["type"] == "urn:lethe:problem:invalid-token"


async def test_scp_list_of_strings_still_grants_scopes(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    now = int(time.time())
    claims = {"sub": "svc", "aud": settings.jwt_audience, "iss": settings.jwt_issuer, "iat": now}
    claims |= {"exp": now + 300, "scp": ["audit:read"]}
    assert settings.jwt_secret is not None
    token = jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
    response = await client.get(PROTECTED, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_access_log_records_401_as_401(client: AsyncTestClient[Litestar]) -> None:
    handler = _Records()
    access = logging.getLogger("lethe.access")
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    try:
        response = await client.get(PROTECTED, headers={"Authorization": "Bearer not-a-token"})
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    assert response.status_code == 401
    statuses = [getattr(r, "lethe_fields", {}).get("status") for r in handler.records]
    assert statuses == [401]
