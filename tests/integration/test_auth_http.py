"""Every /v1 route demands a valid bearer token and its scope; bodies are bounded."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import jwt
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.config import Settings
from app.lib.auth import ALL_SCOPES

PROTECTED = "/v1/audit/events"  # scope audit:read


def _claims(settings: Settings, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "svc",
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
        "iat": now,
        "exp": now + 300,
        "scope": "audit:read",
    }
    claims.update(overrides)
    return claims


def _assert_401(response: object) -> None:
    assert response.status_code == 401  # type: ignore[attr-defined]
    assert response.headers["www-authenticate"].startswith("Bearer")  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    assert response.json()["type"] == "urn:lethe:problem:invalid-token"  # type: ignore[attr-defined]


async def test_missing_token_is_401_with_challenge(client: AsyncTestClient[Litestar]) -> None:
    _assert_401(await client.get(PROTECTED))


async def test_token_signed_with_another_key_is_401(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    forged = jwt.encode(_claims(settings), "a-completely-different-secret-of-32-bytes", algorithm="HS256")
    _assert_401(await client.get(PROTECTED, headers={"Authorization": f"Bearer {forged}"}))


async def test_expired_token_is_401(client: AsyncTestClient[Litestar], settings: Settings) -> None:
    now = int(time.time())
    expired = jwt.encode(
        _claims(settings, iat=now - 7200, exp=now - 3600), settings.jwt_secret, algorithm="HS256"
    )
    response = await client.get(PROTECTED, headers={"Authorization": f"Bearer {expired}"})
    _assert_401(response)
    assert "expired" in response.json()["detail"]


async def test_alg_none_is_401(client: AsyncTestClient[Litestar], settings: Settings) -> None:
    unsigned = jwt.encode(_claims(settings), None, algorithm="none")
    _assert_401(await client.get(PROTECTED, headers={"Authorization": f"Bearer {unsigned}"}))


async def test_non_bearer_scheme_is_401(client: AsyncTestClient[Litestar]) -> None:
    _assert_401(await client.get(PROTECTED, headers={"Authorization": "Basic dXNlcjpwYXNz"}))


async def test_missing_scope_is_403_insufficient_scope(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]]
) -> None:
    response = await client.get(PROTECTED, headers=auth("consent:read"))
    assert response.status_code == 403
    body = response.json()
    assert body["type"] == "urn:lethe:problem:insufficient-scope"
    assert "audit:read" in body["detail"]


async def test_right_scope_is_let_through(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]]
) -> None:
    assert (await client.get(PROTECTED, headers=auth("audit:read"))).status_code == 200


async def test_oversized_body_is_413(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]], settings: Settings
) -> None:
    body = b'{"padding": "' + b"x" * (settings.max_body_bytes + 10) + b'"}'
    response = await client.post(
        "/v1/consents", content=body, headers={**auth(), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["type"] == "urn:lethe:problem:payload-too-large"


async def test_unknown_body_field_is_422_naming_it(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]]
) -> None:
    response = await client.post("/v1/consents", json={"surprise": 1}, headers=auth())
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "urn:lethe:problem:validation"
    assert any("surprise" in (e["field"] + e["message"]) for e in body["errors"])


async def test_every_operation_refuses_a_token_without_its_scope(
    client: AsyncTestClient[Litestar], auth: Callable[..., dict[str, str]]
) -> None:
    """Each /v1 operation of the served OpenAPI document answers 403 naming its scope to a token
    holding every other scope (before its parameters, body or rows are looked at)."""
    spec = (await client.get("/schema/openapi.json")).json()
    checked = 0
    for path, item in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            scope = operation["security"][0]["OAuth2"][0]
            others = [s for s in ALL_SCOPES if s != scope]
            response = await client.request(method.upper(), url, headers=auth(*others), content=b"{}")
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["type"] == "urn:lethe:problem:insufficient-scope", (method, path)
            assert scope in response.json()["detail"], (method, path)
            checked += 1
    assert checked >= 39  # every operation of the document, none skipped
