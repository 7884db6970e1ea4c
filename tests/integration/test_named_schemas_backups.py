"""Restore tests and erasure replay of a database whose tables live in named schemas (PostgreSQL).

The database's own ``search_path`` (``ALTER DATABASE ... SET search_path``) puts its unqualified
tables in ``app``; a dump does not carry that setting, so the restore test must read the restored
copy with the manifest's schemas.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.domain.audit.references import tombstone_reference
from app.domain.backups import replay as replay_service
from app.engine.targets import TargetRegistry
from tests.conftest import TEST_AUDIT_KEY, make_settings
from tests.integration.requests_support import drain
from tests.integration.test_backups import execute, finished, pg_dump, restore_into, scalar
from tests.servers import DatabaseServer

SYSTEM = "ledger"
TARGET = "LETHE_TARGET_LEDGER_URL"
SCRATCH = "LETHE_TEST_LEDGER_SCRATCH_URL"
ERASED = (2, 4)
Headers = Callable[..., dict[str, str]]

SCHEMA = (
    "CREATE SCHEMA app",
    "CREATE SCHEMA billing",
    "CREATE TABLE app.users (id integer PRIMARY KEY, email text NOT NULL UNIQUE, name text)",
    "CREATE TABLE app.orders (id integer PRIMARY KEY, user_id integer NOT NULL REFERENCES app.users,"
    " total integer)",
    "CREATE TABLE billing.invoices (id integer PRIMARY KEY, user_id integer NOT NULL REFERENCES app.users,"
    " billing_name text)",
    "INSERT INTO app.users SELECT g, 'user' || g || '@example.com', 'User ' || g"
    " FROM generate_series(1, 6) g",
    "INSERT INTO app.orders SELECT g, 1 + g % 6, g * 10 FROM generate_series(1, 12) g",
    "INSERT INTO billing.invoices SELECT g, g, 'User ' || g FROM generate_series(1, 6) g",
)

MANIFEST = {
    "system": SYSTEM,
    "connection": {"env": TARGET, "schemas": ["app", "billing"]},
    "subject": {"table": "users", "key": "id", "identities": {"email": "email"}},
    "tables": {
        "users": {
            "strategy": "delete",
            "columns": {"email": {"category": "user.contact.email"}, "name": {"category": "user.name"}},
        },
        "orders": {"strategy": "delete"},
        "billing.invoices": {"strategy": "delete", "columns": {"billing_name": {"category": "user.name"}}},
    },
}


@pytest.fixture
async def ledger(postgres_server: DatabaseServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The target: unqualified tables in ``app`` by the database's own search_path."""
    url = await postgres_server.create_database("lethe_ledger")
    name = make_url(url).database
    await execute(postgres_server.admin_url, f"ALTER DATABASE {name} SET search_path = app, public")
    await execute(url, *SCHEMA)
    monkeypatch.setenv(TARGET, url)
    monkeypatch.setenv(SCRATCH, postgres_server.admin_url)
    return url


@pytest.fixture
def settings(tmp_path: Path, store_url: str, ledger: str) -> Settings:
    """Settings whose backup sources are the ledger's dump directory."""
    config = {
        "systems": {
            SYSTEM: {
                "scratch": {"env": SCRATCH},
                "sources": [{"kind": "directory", "path": str(tmp_path / "dumps"), "pattern": "*.dump"}],
            }
        }
    }
    path = tmp_path / "backups.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return make_settings(tmp_path, database_url=store_url, backup_sources=str(path))


async def _erase_through_requests(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> dict[int, dict[str, Any]]:
    requests: dict[int, dict[str, Any]] = {}
    for key in ERASED:
        body = {"kind": "erasure", "identities": {"email": f"user{key}@example.com"}}
        created = await client.post("/v1/requests", json=body, headers=auth())
        assert created.status_code == 202, created.text
        requests[key] = created.json()
    await drain(settings, store_engine)
    for request in requests.values():
        done = (await client.get(f"/v1/requests/{request['id']}", headers=auth("requests:read"))).json()
        assert done["status"] == "completed", done
    return requests


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the store is not what is tested
async def test_restore_test_and_replay_use_the_manifests_schemas(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    ledger: str,
    tmp_path: Path,
) -> None:
    registered = await client.post("/v1/manifests", json=MANIFEST, headers=auth())
    assert registered.status_code in (200, 201), registered.text
    dump = pg_dump(ledger, tmp_path / "dumps" / "ledger.dump")
    before = datetime.now(UTC) - timedelta(seconds=1)
    requests = await _erase_through_requests(client, auth, settings, store_engine)
    assert await scalar(ledger, "SELECT count(*) FROM billing.invoices WHERE id IN (2, 4)") == 0

    started = await client.post(
        "/v1/backups/restore-tests", json={"system": SYSTEM}, headers=auth("backups:run")
    )
    assert started.status_code == 202, started.text
    result = await finished(client, auth, started.headers["location"])
    assert result["status"] == "passed", result
    assert result["tables"] == {"users": 6, "orders": 12, "billing.invoices": 6}
    assert result["resurrected_subjects"] == len(ERASED)
    keyed = {tombstone_reference(TEST_AUDIT_KEY, SYSTEM, key): key for key in ERASED}
    assert sorted(result["resurrected_refs"]) == sorted(keyed)
    # each resurrected subject under the references its erasure request and audit events carry
    for subject in result["resurrected"]:
        request = requests[keyed[subject["subject_key_ref"]]]
        assert subject["request_id"] == request["id"]
        assert subject["subject_ref"] == request["subject_ref"]
        events = await client.get(
            "/v1/audit/events", params={"request_id": request["id"]}, headers=auth("audit:read")
        )
        items = events.json()["items"]
        assert subject["subject_ref"] in {e["subject_ref"] for e in items}
        assert subject["subject_key_ref"] in {e["payload"].get("subject_key_ref") for e in items}

    # a real restore of the old dump brings the erased subjects back; replay erases them again
    await execute(ledger, "DROP SCHEMA app CASCADE", "DROP SCHEMA billing CASCADE")
    restore_into(ledger, dump)
    assert await scalar(ledger, "SELECT count(*) FROM billing.invoices WHERE id IN (2, 4)") == 2

    async def replay() -> replay_service.ReplayReport:
        targets = TargetRegistry(settings)
        try:
            async with AsyncSession(store_engine, expire_on_commit=False) as session, session.begin():
                return await replay_service.replay_erasures(
                    session, settings, targets, system=SYSTEM, since=before, actor="test-operator"
                )
        finally:
            await targets.dispose()

    first = await replay()
    assert (first.tombstones, first.subjects_found) == (2, 2)
    assert await scalar(ledger, "SELECT count(*) FROM app.users WHERE id IN (2, 4)") == 0
    assert await scalar(ledger, "SELECT count(*) FROM billing.invoices WHERE id IN (2, 4)") == 0
    assert await scalar(ledger, "SELECT count(*) FROM billing.invoices") == 4
    second = await replay()
    assert (second.subjects_found, second.rows_changed) == (0, 0)
