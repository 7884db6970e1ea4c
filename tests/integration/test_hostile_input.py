"""Hostile bodies and parameters get a 4xx problem naming what is wrong, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

Headers = Callable[..., dict[str, str]]
JSON = {"Content-Type": "application/json"}
YAML = {"Content-Type": "application/yaml"}


def _problem(response: object, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["type"] == f"urn:lethe:problem:{slug}"
    return body


@pytest.mark.parametrize("path", ["/v1/audit/events", "/v1/audit/verify", "/v1/audit/checkpoints"])
async def test_options_on_audit_routes_is_never_500(client: AsyncTestClient[Litestar], path: str) -> None:
    response = await client.options(path)
    assert response.status_code in (204, 401), response.text


async def test_json_nested_100k_levels_is_4xx(client: AsyncTestClient[Litestar], auth: Headers) -> None:
    body = b'{"kind": "access", "identities": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = await client.post("/v1/requests", content=body, headers={**auth(), **JSON})
    assert response.status_code in (400, 422), response.text
    assert response.json()["type"] in ("urn:lethe:problem:bad-request", "urn:lethe:problem:validation")


async def test_invalid_utf8_in_a_json_body_is_400(client: AsyncTestClient[Litestar], auth: Headers) -> None:
    response = await client.post(
        "/v1/consents", content=b'{"purpose": "\xff\xfe"}', headers={**auth(), **JSON}
    )
    assert "UTF-8" in str(_problem(response, 400, "bad-request")["detail"])


@pytest.mark.parametrize(
    "document",
    [
        pytest.param("system: " + "9" * 5000 + "\n", id="5000-digit-integer"),
        pytest.param("a: " + "[" * 10_000 + "]" * 10_000 + "\n", id="flow-10k-levels"),
        pytest.param("".join("  " * i + "k:\n" for i in range(10_000)), id="block-10k-levels"),
    ],
)
async def test_hostile_yaml_manifest_is_422(
    client: AsyncTestClient[Litestar], auth: Headers, document: str
) -> None:
    response = await client.post("/v1/manifests", content=document.encode(), headers={**auth(), **YAML})
    assert response.status_code in (413, 422), response.text
    assert response.json()["type"] in (
        "urn:lethe:problem:manifest-invalid",
        "urn:lethe:problem:payload-too-large",
    )


async def test_version_beyond_the_column_is_4xx(client: AsyncTestClient[Litestar], auth: Headers) -> None:
    response = await client.get("/v1/manifests/shop?version=274877906945", headers=auth())
    assert response.status_code in (404, 422), response.text


@pytest.mark.parametrize("name", ["since", "until"])
async def test_naive_audit_bounds_are_422(
    client: AsyncTestClient[Litestar], auth: Headers, name: str
) -> None:
    response = await client.get(f"/v1/audit/events?{name}=2026-01-01T00:00:00", headers=auth())
    body = _problem(response, 422, "validation")
    assert [e["field"] for e in body["errors"]] == [f"query.{name}"]  # type: ignore[union-attr]


@pytest.mark.parametrize("media_type", ["text/plain", "application/x-www-form-urlencoded", "text/yaml"])
async def test_non_json_bodies_are_415(
    client: AsyncTestClient[Litestar], auth: Headers, media_type: str
) -> None:
    body = b'{"kind": "access", "identities": {"email": "a@example.com"}}'
    response = await client.post("/v1/requests", content=body, headers={**auth(), "Content-Type": media_type})
    _problem(response, 415, "unsupported-media-type")


def _consent(occurred_at: datetime) -> dict[str, object]:
    return {
        "subject": "alice@example.com",
        "purpose": "newsletter",
        "granted": True,
        "policy_version": "v1",
        "text_hash": "a" * 64,
        "source": "web",
        "occurred_at": occurred_at.isoformat(),
    }


async def test_consent_from_the_future_is_422(client: AsyncTestClient[Litestar], auth: Headers) -> None:
    far = await client.post("/v1/consents", json=_consent(datetime(9999, 1, 1, tzinfo=UTC)), headers=auth())
    body = _problem(far, 422, "validation")
    assert [e["field"] for e in body["errors"]] == ["body.occurred_at"]  # type: ignore[union-attr]
    skewed = await client.post(
        "/v1/consents", json=_consent(datetime.now(UTC) + timedelta(minutes=1)), headers=auth()
    )
    assert skewed.status_code == 201, skewed.text
