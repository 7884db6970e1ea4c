"""A manifest cannot point Lethe at its own store or at a variable the operator did not name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.asgi import create_app
from app.config import Settings
from tests.conftest import make_settings
from tests.integration.requests_support import create_crm, crm_manifest

Headers = Callable[..., dict[str, str]]


def _manifest(connection: dict[str, str]) -> bytes:
    return msgspec.json.encode({**crm_manifest(), "connection": connection})


async def _register(client: AsyncTestClient[Litestar], auth: Headers, connection: dict[str, str]) -> Any:
    return await client.post(
        "/v1/manifests",
        content=_manifest(connection),
        headers={**auth("manifests:write"), "Content-Type": "application/json"},
    )


def _assert_refused(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "urn:lethe:problem:target-connection-refused"
    assert [e["field"] for e in problem["errors"]] == [field]


@pytest.mark.parametrize(
    "variable", ["LETHE_DATABASE_URL", "LETHE_JWT_SECRET", "LETHE_AUDIT_KEY_FILE", "HOME", "PATH"]
)
async def test_service_settings_and_other_variables_are_refused(
    client: AsyncTestClient[Litestar], auth: Headers, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "sqlite+aiosqlite:////nonexistent.db")
    _assert_refused(await _register(client, auth, {"env": variable}), "body.connection.env")


async def test_a_target_variable_that_points_at_the_store_is_refused(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = settings.database_url
    if store.startswith("postgresql"):  # the same database spelt another way
        store = store.replace("127.0.0.1", "localhost").replace("+asyncpg", "")
    monkeypatch.setenv("LETHE_TARGET_EVIL_URL", store)
    _assert_refused(await _register(client, auth, {"env": "LETHE_TARGET_EVIL_URL"}), "body.connection")
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            count = await connection.scalar(text("SELECT count(*) FROM manifest_version"))
    finally:
        await engine.dispose()
    assert count == 0


async def test_files_must_be_listed_by_the_operator(
    tmp_path: Path, store_url: str, token: Callable[..., str]
) -> None:
    crm = tmp_path / "crm.db"
    await create_crm(f"sqlite+aiosqlite:///{crm}")
    secret = tmp_path / "targets" / "crm.url"
    secret.parent.mkdir()
    secret.write_text(f"sqlite+aiosqlite:///{crm}\n")
    stray = tmp_path / "stray.url"
    stray.write_text(f"sqlite+aiosqlite:///{crm}\n")

    def auth(*scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(*scopes)}"}

    listed = make_settings(tmp_path, database_url=store_url, target_url_files=str(secret.parent))
    async with AsyncTestClient(app=create_app(listed)) as client:
        _assert_refused(await _register(client, auth, {"file": str(stray)}), "body.connection.file")
        accepted = await _register(client, auth, {"file": str(secret)})
        assert accepted.status_code == 201, accepted.text


async def test_an_explicitly_listed_variable_is_accepted(
    tmp_path: Path, store_url: str, token: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    await create_crm(url)
    monkeypatch.setenv("CRM_DSN", url)

    def auth(*scopes: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(*scopes)}"}

    async with AsyncTestClient(app=create_app(make_settings(tmp_path, database_url=store_url))) as client:
        _assert_refused(await _register(client, auth, {"env": "CRM_DSN"}), "body.connection.env")
    listed = make_settings(tmp_path, database_url=store_url, target_url_variables="CRM_DSN")
    async with AsyncTestClient(app=create_app(listed)) as client:
        assert (await _register(client, auth, {"env": "CRM_DSN"})).status_code == 201
