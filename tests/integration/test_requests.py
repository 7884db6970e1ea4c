"""Data-subject requests end to end through the HTTP API, on SQLite, PostgreSQL and MariaDB targets."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
import zipfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings
from app.db.audit import AuditEvent
from app.db.models import IdempotencyRecord
from app.db.requests import SubjectRequest
from app.domain.audit.sequencer import sequence_now
from app.domain.requests.metrics import refresh_request_gauges
from app.domain.requests.schemas import RequestIn
from app.lib.idempotency import body_fingerprint
from tests.conftest import store_engine_for
from tests.integration.requests_support import (
    SUBJECT_EMAIL,
    TARGET_ENV,
    create_crm,
    drain,
    hand_written_export,
    metadata,
    register_crm,
    target_url,
    utc,
)

Headers = Callable[..., dict[str, str]]


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
async def crm_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A CRM target database of each dialect, named by the manifest's environment variable."""
    url = await target_url(request.param, tmp_path, request)
    await create_crm(url)
    monkeypatch.setenv(TARGET_ENV, url)
    return url


@pytest.fixture
async def crm_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A CRM target on SQLite only (for lifecycle tests that do not depend on the dialect)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    await create_crm(url)
    monkeypatch.setenv(TARGET_ENV, url)
    return url


async def _create(
    client: AsyncTestClient[Litestar], auth: Headers, body: dict[str, Any], **headers: str
) -> Any:
    return await client.post("/v1/requests", json=body, headers={**auth(), **headers})


async def _actions(store: AsyncEngine, request_id: str) -> list[str]:
    await sequence_now(store)
    async with store.connect() as connection:
        rows = await connection.execute(
            select(AuditEvent.action).where(AuditEvent.request_id == request_id).order_by(AuditEvent.seq)
        )
        return [r[0] for r in rows]


async def _table(url: str, name: str) -> list[dict[str, Any]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            table = metadata.tables[name]
            result = await connection.execute(select(table).order_by(*table.primary_key.columns))
            return [dict(r._mapping) for r in result]
    finally:
        await engine.dispose()


# --- access --------------------------------------------------------------------------------------


async def test_access_export_equals_hand_written_sql(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    crm_url: str,
) -> None:
    await register_crm(client, auth())
    for granted in (True, False):
        consent = {
            "subject": SUBJECT_EMAIL.upper(),
            "purpose": "newsletter",
            "granted": granted,
            "policy_version": "v3",
            "text_hash": "ab" * 32,
            "source": "web",
        }
        assert (await client.post("/v1/consents", json=consent, headers=auth())).status_code == 201
    created = await _create(client, auth, {"kind": "access", "identities": {"email": SUBJECT_EMAIL}})
    assert created.status_code == 202, created.text
    location = created.headers["location"]
    assert created.json()["status"] == "queued"
    assert await drain(settings, store_engine) == 1

    body = (await client.get(location, headers=auth("requests:read"))).json()
    assert body["status"] == "completed", body
    expected = await hand_written_export(crm_url, SUBJECT_EMAIL)
    assert body["systems"][0]["counts"] == {name: len(rows) for name, rows in expected.items()}
    assert body["systems"][0]["not_found"] is False

    exported = await client.get(f"{location}/export?format=json", headers=auth("requests:read"))
    assert exported.status_code == 200
    document = exported.json()
    tables = document["systems"]["crm"]["tables"]
    assert set(tables) == set(expected)
    for name, rows in expected.items():
        assert tables[name]["rows"] == rows, name
        assert tables[name]["row_count"] == len(rows)
    assert len(tables["order_items"]["rows"]) == 6  # two hops away
    assert len(tables["teams"]["rows"]) == 2  # through the join table
    meta = tables["orders"]["metadata"]
    assert meta["purpose"] == "invoicing"
    assert meta["legal_basis"] == "legal obligation"
    assert meta["retention"] == {"legal_basis": "tax law", "duration": "P10Y"}
    assert tables["users"]["metadata"]["recipients"] == ["support desk"]
    assert "user.contact.email" in tables["users"]["metadata"]["categories"]
    history = document["consent_history"]
    assert [(e["purpose"], e["granted"], e["policy_version"]) for e in history] == [
        ("newsletter", True, "v3"),
        ("newsletter", False, "v3"),
    ]

    archive_response = await client.get(f"{location}/export?format=zip", headers=auth("requests:read"))
    assert archive_response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(archive_response.content))
    names = set(archive.namelist())
    assert {f"crm/{t}.csv" for t in expected} <= names
    assert {"crm/metadata.json", "consent_history.csv", "request.json"} <= names
    orders_csv = list(csv.DictReader(io.StringIO(archive.read("crm/orders.csv").decode())))
    assert [int(r["id"]) for r in orders_csv] == [r["id"] for r in expected["orders"]]
    assert [r["note"] for r in orders_csv] == [r["note"] or "" for r in expected["orders"]]

    actions = await _actions(store_engine, body["id"])
    assert actions == ["request.received", "request.queued", "request.running", "request.completed"]
    metrics = (await client.get("/metrics")).text
    assert 'lethe_subject_request_completion_seconds_count{kind="access"}' in metrics


async def test_artifact_is_encrypted_at_rest_and_purged_when_expired(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    crm_sqlite: str,
) -> None:
    from app.domain.requests.housekeeping import purge_expired_artifacts

    await register_crm(client, auth())
    created = await _create(client, auth, {"kind": "access", "identities": {"user_id": "1"}})
    await drain(settings, store_engine)
    files = sorted(Path(settings.artifacts_dir).iterdir())
    assert [f.name.split(".", 2)[2] for f in files] == ["json.enc", "zip.enc"]
    for path in files:
        assert SUBJECT_EMAIL.encode() not in path.read_bytes()
    request_id = created.json()["id"]
    assert await purge_expired_artifacts(settings, store_engine, now=utc(2100, 1, 1)) == 1
    assert list(Path(settings.artifacts_dir).iterdir()) == []
    gone = await client.get(f"/v1/requests/{request_id}/export", headers=auth())
    assert gone.status_code == 404
    assert (await _actions(store_engine, request_id))[-1] == "request.export_purged"


async def test_unknown_subject_is_a_completed_not_found(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    crm_sqlite: str,
) -> None:
    await register_crm(client, auth())
    created = await _create(client, auth, {"kind": "access", "identities": {"email": "nobody@example.com"}})
    await drain(settings, store_engine)
    body = (await client.get(created.headers["location"], headers=auth())).json()
    assert body["status"] == "completed"
    assert body["systems"][0]["not_found"] is True
    document = (await client.get(created.headers["location"] + "/export", headers=auth())).json()
    assert document["systems"]["crm"] == {"manifest_version": 1, "found": False, "tables": {}}


# --- rectification -------------------------------------------------------------------------------


async def test_rectification_changes_exactly_the_named_cells(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    crm_url: str,
) -> None:
    await register_crm(client, auth())
    before = {name: await _table(crm_url, name) for name in ("users", "orders")}
    changes = {
        "crm": {"users": {"full_name": "Ada King", "birth_date": "1815-12-10"}, "orders": {"note": "fixed"}}
    }
    created = await _create(
        client, auth, {"kind": "rectification", "identities": {"email": SUBJECT_EMAIL}, "changes": changes}
    )
    assert created.status_code == 202, created.text
    await drain(settings, store_engine)
    body = (await client.get(created.headers["location"], headers=auth())).json()
    assert body["status"] == "completed", body
    assert body["systems"][0]["counts"] == {"orders": 3, "users": 1}

    after = {name: await _table(crm_url, name) for name in ("users", "orders")}
    expected_users = [dict(r) for r in before["users"]]
    expected_users[0].update(full_name="Ada King", birth_date=date(1815, 12, 10))
    assert after["users"] == expected_users
    expected_orders = [dict(r, note="fixed") if r["user_id"] == 1 else r for r in before["orders"]]
    assert after["orders"] == expected_orders

    await sequence_now(store_engine)
    async with store_engine.connect() as connection:
        event = (
            await connection.execute(
                select(AuditEvent.payload).where(AuditEvent.action == "request.system_rectified")
            )
        ).scalar_one()
    assert event["tables"] == {"orders": ["note"], "users": ["birth_date", "full_name"]}
    assert "Ada King" not in str(event)


async def test_rectification_refuses_values_that_do_not_fit(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    crm_sqlite: str,
) -> None:
    await register_crm(client, auth())
    before = await _table(crm_sqlite, "users")
    too_long = {"crm": {"users": {"full_name": "x" * 41}}}
    created = await _create(
        client, auth, {"kind": "rectification", "identities": {"email": SUBJECT_EMAIL}, "changes": too_long}
    )
    await drain(settings, store_engine)
    body = (await client.get(created.headers["location"], headers=auth())).json()
    assert body["status"] == "failed"
    assert body["failure_reason"] == "value for crm.users.full_name is longer than 40 characters"
    assert await _table(crm_sqlite, "users") == before


async def test_rectification_breaking_a_unique_constraint_fails_naming_it(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    crm_url: str,
) -> None:
    await register_crm(client, auth())
    before = await _table(crm_url, "users")
    taken = {"crm": {"users": {"email": "person2@example.com", "full_name": "Ada King"}}}
    created = await _create(
        client, auth, {"kind": "rectification", "identities": {"email": SUBJECT_EMAIL}, "changes": taken}
    )
    await drain(settings, store_engine)
    body = (await client.get(created.headers["location"], headers=auth())).json()
    assert body["status"] == "failed"
    assert body["systems"][0]["status"] == "failed"
    reason = body["failure_reason"]
    assert "'users.email'" in reason
    assert "UNIQUE constraint" in reason
    assert "of table 'users'" in reason
    assert "person2@example.com" not in reason
    assert await _table(crm_url, "users") == before


async def test_malformed_requests_are_422_naming_the_culprit(
    client: AsyncTestClient[Litestar], auth: Headers, crm_sqlite: str
) -> None:
    await register_crm(client, auth())
    cases = [
        ({"kind": "access", "identities": {"passport": "X"}}, "body.identities.passport"),
        ({"kind": "access", "identities": {"email": "a@b"}, "systems": ["billing"]}, "body.systems.billing"),
        (
            {
                "kind": "rectification",
                "identities": {"email": "a@b"},
                "changes": {"crm": {"users": {"created_at": "2020-01-01"}}},
            },
            "body.changes.crm.users.created_at",
        ),
        (
            {
                "kind": "rectification",
                "identities": {"email": "a@b"},
                "changes": {"crm": {"invoices": {"x": 1}}},
            },
            "body.changes.crm.invoices",
        ),
        ({"kind": "rectification", "identities": {"email": "a@b"}}, "body.changes"),
        ({"kind": "access", "identities": {"email": "a@b"}, "dry_run": True}, "body.dry_run"),
    ]
    for body, field in cases:
        response = await _create(client, auth, body)
        assert response.status_code == 422, (body, response.text)
        assert field in [e["field"] for e in response.json()["errors"]], response.json()
    assert (
        await _create(client, auth, {"kind": "export", "identities": {"email": "a@b"}})
    ).status_code == 422


# --- idempotency ---------------------------------------------------------------------------------


async def test_idempotency_key_replays_refuses_and_detects_concurrency(
    client: AsyncTestClient[Litestar], auth: Headers, store_engine: AsyncEngine, crm_sqlite: str
) -> None:
    await register_crm(client, auth())
    body = {"kind": "access", "identities": {"email": SUBJECT_EMAIL}}
    first = await _create(client, auth, body, **{"Idempotency-Key": "k-1"})
    again = await _create(client, auth, body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    async with store_engine.connect() as connection:
        count = len((await connection.execute(select(SubjectRequest.id))).all())
    assert count == 1

    other = await _create(
        client, auth, {**body, "identities": {"email": "x@example.com"}}, **{"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 422
    assert other.json()["type"] == "urn:lethe:problem:idempotency-key-reused"

    # a duplicate arriving while the first is still being processed: its pending record exists
    async with store_engine.begin() as connection:
        await connection.execute(
            IdempotencyRecord.__table__.insert().values(
                client_id="test-operator",
                key="k-2",
                operation="requests.create",
                request_hash=body_fingerprint(RequestIn(kind="access", identities={"email": SUBJECT_EMAIL})),
                created_at=utc(2100, 1, 1),
            )
        )
    concurrent = await _create(client, auth, body, **{"Idempotency-Key": "k-2"})
    assert concurrent.status_code == 409

    # the same key from another client is another request
    other_client = await client.post(
        "/v1/requests", json=body, headers={**auth(client_id="other-client"), "Idempotency-Key": "k-1"}
    )
    assert other_client.status_code == 202
    assert other_client.json()["id"] != first.json()["id"]


async def test_truly_concurrent_duplicates_create_one_request(
    client: AsyncTestClient[Litestar], auth: Headers, store_engine: AsyncEngine, crm_sqlite: str
) -> None:
    await register_crm(client, auth())
    body = {"kind": "access", "identities": {"email": SUBJECT_EMAIL}}
    responses = await asyncio.gather(
        *(_create(client, auth, body, **{"Idempotency-Key": "same"}) for _ in range(4))
    )
    # the claim shares the work's transaction: each duplicate waits on the key, then replays
    assert [r.status_code for r in responses] == [202] * 4, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert (
        sorted(r.headers.get("idempotent-replayed", "false") for r in responses) == ["false"] + ["true"] * 3
    )
    async with store_engine.connect() as connection:
        assert len((await connection.execute(select(SubjectRequest.id))).all()) == 1
        pending = await connection.execute(
            select(IdempotencyRecord.key).where(IdempotencyRecord.status_code.is_(None))
        )
        assert pending.all() == []


async def _terminate_other_backends(store_engine: AsyncEngine) -> int:
    """End every other server connection to the store database (what a server restart does)."""
    async with store_engine.connect() as connection:
        ended = await connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        return len(ended.all())


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_a_dropped_store_connection_is_retried_once(
    client: AsyncTestClient[Litestar], auth: Headers, store_engine: AsyncEngine, crm_sqlite: str
) -> None:
    await register_crm(client, auth())
    body = {"kind": "access", "identities": {"email": SUBJECT_EMAIL}}
    created = await _create(client, auth, body, **{"Idempotency-Key": "before-drop"})
    assert created.status_code == 202
    request_id = created.json()["id"]
    assert (await client.get(f"/v1/requests/{request_id}", headers=auth())).status_code == 200

    # the pool keeps its (now dead) connections: no ping on checkout, the handler retries. The
    # server's notice can race the next statement (asyncpg then reports an internal state error
    # rather than a closed connection), so the drop is repeated to meet both orders.
    for _ in range(12):
        assert await _terminate_other_backends(store_engine) >= 1
        read = await client.get(f"/v1/requests/{request_id}", headers=auth())
        assert read.status_code == 200, read.text
        assert read.json()["id"] == request_id

    assert await _terminate_other_backends(store_engine) >= 1
    second = await _create(client, auth, body, **{"Idempotency-Key": "after-drop"})
    assert second.status_code == 202, second.text
    replayed = await _create(client, auth, body, **{"Idempotency-Key": "after-drop"})
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json()["id"] == second.json()["id"]
    async with store_engine.connect() as connection:
        assert len((await connection.execute(select(SubjectRequest.id))).all()) == 2
    assert await _actions(store_engine, second.json()["id"]) == ["request.received", "request.queued"]


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_a_dropped_store_connection_elsewhere_answers_503_then_recovers(
    client: AsyncTestClient[Litestar], auth: Headers, store_engine: AsyncEngine, crm_sqlite: str
) -> None:
    await register_crm(client, auth())
    body = {"kind": "access", "identities": {"email": SUBJECT_EMAIL}}
    assert (await _create(client, auth, body)).status_code == 202

    # the list is not retried: the lost connection is a 503 to retry, not an internal error
    assert await _terminate_other_backends(store_engine) >= 1
    listed = await client.get("/v1/requests", headers=auth("requests:read"))
    assert listed.status_code == 503, listed.text
    assert listed.headers["content-type"].startswith("application/problem+json")
    assert listed.json()["type"] == "urn:lethe:problem:unavailable"
    assert listed.headers["retry-after"] == "1"
    # the pool let go of its dead connections: the retry is served
    again = await client.get("/v1/requests", headers=auth("requests:read"))
    assert again.status_code == 200, again.text
    assert len(again.json()["items"]) == 1


# --- lifecycle -----------------------------------------------------------------------------------


async def test_deadline_is_one_calendar_month_and_extension_rules(
    client: AsyncTestClient[Litestar], auth: Headers, store_engine: AsyncEngine, crm_sqlite: str
) -> None:
    await register_crm(client, auth())
    created = (await _create(client, auth, {"kind": "access", "identities": {"email": SUBJECT_EMAIL}})).json()
    request_id = created["id"]
    async with store_engine.begin() as connection:  # received on 31 January: due 28/29 February
        await connection.execute(
            update(SubjectRequest)
            .where(SubjectRequest.id == uuid.UUID(request_id))
            .values(received_at=utc(2100, 1, 31, 9), due_at=utc(2100, 2, 28, 9))
        )
    url = f"/v1/requests/{request_id}/extend"
    beyond = await client.post(
        url, json={"reason": "complex", "until": "2100-04-29T09:00:00Z"}, headers=auth()
    )
    assert beyond.status_code == 422
    ok = await client.post(url, json={"reason": "many systems", "months": 2}, headers=auth())
    assert ok.status_code == 200, ok.text
    assert ok.json()["extended_due_at"].startswith("2100-04-28T09:00:00")
    assert ok.json()["extension_reason"] == "many systems"
    no_reason = await client.post(url, json={"months": 1}, headers=auth())
    assert no_reason.status_code == 422

    async with store_engine.begin() as connection:  # the first due date has passed
        await connection.execute(
            update(SubjectRequest)
            .where(SubjectRequest.id == uuid.UUID(request_id))
            .values(received_at=utc(2020, 1, 31), due_at=utc(2020, 2, 29), extended_due_at=None)
        )
    late = await client.post(url, json={"reason": "too late", "months": 1}, headers=auth())
    assert late.status_code == 409
    overdue = (await client.get("/v1/requests?overdue=true", headers=auth())).json()
    assert [r["id"] for r in overdue["items"]] == [request_id]
    assert overdue["items"][0]["overdue"] is True
    assert (await client.get("/v1/requests?overdue=false", headers=auth())).json()["items"] == []
    await refresh_request_gauges(store_engine)
    metrics = (await client.get("/metrics")).text
    assert 'lethe_subject_requests_overdue{kind="access"} 1.0' in metrics
    assert 'lethe_subject_requests{kind="access",status="queued"} 1.0' in metrics
    assert (await _actions(store_engine, request_id)).count("request.extended") == 1


async def test_approval_reject_and_cancel(
    tmp_path: Path, store_url: str, crm_sqlite: str, token: Callable[..., str]
) -> None:
    from app.asgi import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, database_url=store_url, approval_required="erasure")
    engine = store_engine_for(store_url)

    def auth(*scopes: str, sub: str = "test-operator") -> dict[str, str]:
        return {"Authorization": f"Bearer {token(*scopes, sub=sub)}"}

    async with AsyncTestClient(app=create_app(settings)) as client:
        await register_crm(client, auth())
        body = {"kind": "erasure", "identities": {"email": SUBJECT_EMAIL}, "dry_run": True}
        held = (await client.post("/v1/requests", json=body, headers=auth())).json()
        assert held["status"] == "awaiting_approval"
        assert held["dry_run"] is True
        url = f"/v1/requests/{held['id']}"
        assert (await client.post(url + "/approve", headers=auth("requests:write"))).status_code == 403
        approved = await client.post(
            url + "/approve", headers=auth("requests:approve", "requests:admin", sub="dpo")
        )
        assert approved.json()["status"] == "queued"
        assert (await client.post(url + "/approve", headers=auth(sub="dpo"))).status_code == 409
        await drain(settings, engine)
        planned = (await client.get(url, headers=auth())).json()
        assert planned["status"] == "completed", planned
        actions = await _actions(engine, held["id"])
        assert actions[:4] == [
            "request.received",
            "request.awaiting_approval",
            "request.approved",
            "request.running",
        ]
        assert actions[-2:] == ["erasure.planned", "request.completed"]  # per-system event first

        rejected = (await client.post("/v1/requests", json=body, headers=auth())).json()
        assert (await client.post(f"/v1/requests/{rejected['id']}/reject", headers=auth())).json()[
            "status"
        ] == "rejected"
        access = (
            await client.post(
                "/v1/requests", json={"kind": "access", "identities": {"email": "a@b"}}, headers=auth()
            )
        ).json()
        assert access["status"] == "queued"  # approval is configured for erasure only
        cancelled = await client.post(f"/v1/requests/{access['id']}/cancel", headers=auth())
        assert cancelled.json()["status"] == "cancelled"
        assert (await client.post(f"/v1/requests/{access['id']}/cancel", headers=auth())).status_code == 409
        async with engine.connect() as connection:
            wiped = (
                (
                    await connection.execute(
                        select(SubjectRequest.identities_encrypted).where(
                            SubjectRequest.status.in_(["rejected", "cancelled"])
                        )
                    )
                )
                .scalars()
                .all()
            )
        assert wiped == [None, None]

        listing = (await client.get("/v1/requests?kind=erasure&limit=1", headers=auth())).json()
        assert len(listing["items"]) == 1
        assert listing["next_cursor"]
        second = (
            await client.get(
                f"/v1/requests?kind=erasure&limit=1&cursor={listing['next_cursor']}", headers=auth()
            )
        ).json()
        assert second["items"][0]["id"] != listing["items"][0]["id"]
        assert second["next_cursor"] is None
        assert [
            r["id"]
            for r in (await client.get("/v1/requests?status=rejected", headers=auth())).json()["items"]
        ] == [rejected["id"]]
    await engine.dispose()
