"""Registration over HTTP: strict mode, the notice on uncovered personal data, audited retention
overrides, and duplicate keys in JSON bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from app.asgi import create_app
from app.config import Settings
from app.db.audit import AuditEvent
from app.demo import DEMO_MANIFEST
from app.demo.shop import create_shop
from app.domain.audit.sequencer import sequence_now
from app.lib.auth import mint_token
from tests.conftest import make_settings, store_engine_for

YAML = {"Content-Type": "application/yaml"}
PHONE = "      phone: {category: user.contact.phone_number, strategy: delete, rectifiable: true}\n"


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "shop.db"
    create_shop(path, people=10)
    monkeypatch.setenv("LETHE_TARGET_SHOP_URL", f"sqlite+aiosqlite:///{path}")
    return path


def _settings(tmp_path: Path, store_url: str, *, strict: bool) -> Settings:
    return make_settings(tmp_path, database_url=store_url, manifest_strict=str(strict).lower())


async def _post(settings: Settings, body: str, headers: dict[str, str] = YAML) -> tuple[int, dict]:  # type: ignore[type-arg]
    token = mint_token(settings, sub="test-operator", scopes=["manifests:write", "manifests:read"])
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.post(
            "/v1/manifests", content=body, headers={**headers, "Authorization": f"Bearer {token}"}
        )
    return response.status_code, response.json()


def _demo() -> str:
    return DEMO_MANIFEST.read_text(encoding="utf-8")


async def test_uncovered_personal_columns_are_a_notice_by_default_and_refused_when_strict(
    shop: Path, tmp_path: Path, store_url: str
) -> None:
    uncovered = _demo().replace(PHONE, "")
    status, body = await _post(_settings(tmp_path, store_url, strict=False), uncovered)
    assert status == 201
    assert "users.phone" in body["notice"]
    assert "survives erasure" in body["notice"]
    assert [f["column"] for f in body["findings"]] == ["phone"]

    status, body = await _post(_settings(tmp_path, store_url, strict=True), uncovered)
    assert status == 422
    (error,) = body["errors"]
    assert error["field"] == "tables.users.columns.phone"
    assert "strict mode" in error["message"]

    status, body = await _post(_settings(tmp_path, store_url, strict=True), _demo())
    assert status == 201
    assert body["notice"] is None


async def test_a_retention_override_is_reported_and_audited(
    shop: Path, tmp_path: Path, store_url: str
) -> None:
    settings = _settings(tmp_path, store_url, strict=False)
    sooner = _demo().replace("    older_than: P10Y\n", "    older_than: P0D\n")
    status, body = await _post(settings, sooner)
    assert status == 422
    assert body["errors"][0]["field"] == "retention_policies[1].older_than"
    assert "P10Y" in body["errors"][0]["message"]

    reason = "orders of closed accounts are anonymized at once, per the tax adviser"
    overridden = sooner.replace(
        "    older_than: P0D\n    action: anonymize\n",
        f'    older_than: P0D\n    action: anonymize\n    retention_override: "{reason}"\n',
    )
    status, body = await _post(settings, overridden)
    assert status == 201, body
    assert [r["kind"] for r in body["risks"]] == ["retention_conflict"]
    engine = store_engine_for(store_url)
    try:
        await sequence_now(engine)
        async with engine.connect() as connection:
            payload = (
                await connection.execute(
                    select(AuditEvent.payload).where(AuditEvent.action == "manifest.registered")
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    assert payload["retention_overrides"] == ["old-orders"]
    registered = body["version"]["manifest"]["retention_policies"][1]
    assert registered["retention_override"] == reason


async def test_a_json_body_repeating_a_key_is_refused_naming_it(
    shop: Path, tmp_path: Path, store_url: str
) -> None:
    document = json.dumps({"system": "shop"}, indent=1)
    body_text = document[:-2] + ',\n "system": "other"\n}'
    status, body = await _post(
        _settings(tmp_path, store_url, strict=False), body_text, {"Content-Type": "application/json"}
    )
    assert status == 422
    assert body["errors"][0]["field"] == "system"
    assert "lines 2 and 3" in body["errors"][0]["message"]
