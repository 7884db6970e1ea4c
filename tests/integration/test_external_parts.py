"""What an external system receives and gives back: its task's identities (and a rectification's
new values) read once within their time to live, and an export part joining the subject's
access export (SQLite and PostgreSQL store, real webhook receiver on loopback)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.config import Settings
from app.db.audit import AuditEvent
from app.db.external import ExternalTask
from app.lib.clock import utcnow
from tests.integration import test_external_tasks as external_tasks
from tests.integration.requests_support import SUBJECT_EMAIL, drain, register_crm
from tests.integration.test_external_tasks import event_payloads, mailer, register
from tests.integration.test_webhooks import send_due
from tests.integration.webhooks_support import CLIENT_SCOPES, receiver

Headers = Callable[..., dict[str, str]]
settings = external_tasks.settings  # the same store, receiver allow-list and CRM target
crm = external_tasks.crm
PART_LIMIT = 262_144  # the default of LETHE_EXTERNAL_EXPORT_PART_BYTES
NEW_EMAIL = "ada.lovelace@example.org"
PART = {"contacts": [{"email": SUBJECT_EMAIL, "lists": ["news", "offers"], "opted_in": True}]}


async def _setup(client: AsyncTestClient[Litestar], auth: Headers) -> dict[str, str]:
    """The CRM (a database) and the mailer (external, manual: the request's client is its owner)."""
    await register_crm(client, auth())
    assert (await register(client, mailer(), auth())).status_code == 201
    return auth(*CLIENT_SCOPES, sub="shop", client_id="shop")


async def _request(client: AsyncTestClient[Litestar], headers: dict[str, str], **body: Any) -> str:
    answer = await client.post(
        "/v1/requests", json={"identities": {"email": SUBJECT_EMAIL}, **body}, headers=headers
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def _start(
    client: AsyncTestClient[Litestar], auth: Headers, kind: str
) -> tuple[dict[str, str], str, str]:
    """The shop's headers, a new request of ``kind`` and the path of its mailer task."""
    shop = await _setup(client, auth)
    request_id = await _request(client, shop, kind=kind)
    return shop, request_id, f"/v1/requests/{request_id}/systems/mailer"


async def _task(store: AsyncEngine, request_id: str) -> ExternalTask:
    async with async_sessionmaker(store, expire_on_commit=False)() as session:
        found = await session.scalar(select(ExternalTask).where(ExternalTask.system == "mailer"))
        assert found is not None
        assert str(found.request_id) == request_id
        return found


async def _audit_payloads(store: AsyncEngine) -> str:
    async with async_sessionmaker(store)() as session:
        rows = (await session.scalars(select(AuditEvent))).all()
    return msgspec.json.encode([(r.action, r.payload) for r in rows]).decode()


async def test_the_identities_read_expires_and_the_task_stays_reportable(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    shop, request_id, path = await _start(client, auth, "erasure")
    task = await _task(store_engine, request_id)
    assert task.opened_at is not None
    ttl = timedelta(seconds=settings.external_identities_ttl_seconds)
    async with store_engine.begin() as connection:  # the link was handed out a moment too long ago
        await connection.execute(update(ExternalTask).values(opened_at=utcnow() - ttl - timedelta(seconds=1)))

    expired = await client.get(f"{path}/identities", headers=shop)
    assert expired.status_code == 410, expired.text
    assert expired.json()["type"] == "urn:lethe:problem:task-identities-expired"
    assert SUBJECT_EMAIL not in expired.text
    assert (await _task(store_engine, request_id)).identities_read_at is None

    assert await drain(settings, store_engine) == 1
    done = await client.post(f"{path}/complete", json={"counts": {"contacts": 0}}, headers=shop)
    assert done.status_code == 200, done.text
    view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
    assert view["status"] == "completed"


async def test_within_its_time_to_live_the_read_succeeds_once(
    client: AsyncTestClient[Litestar], auth: Headers, store_engine: AsyncEngine
) -> None:
    shop, request_id, path = await _start(client, auth, "erasure")
    first = await client.get(f"{path}/identities", headers=shop)
    assert first.status_code == 200, first.text
    assert (first.json()["identities"], first.json()["changes"]) == ({"email": SUBJECT_EMAIL}, None)
    second = await client.get(f"{path}/identities", headers=shop)
    assert second.status_code == 409
    assert SUBJECT_EMAIL not in second.text
    view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
    (task,) = view["external_tasks"]
    assert (task["identities_read"], task["opened_at"] is not None) == (True, True)


async def test_a_rectification_hands_its_new_values_only_through_the_read(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    capfd: pytest.CaptureFixture[str],
) -> None:
    shop = await _setup(client, auth)
    changes = {"crm": {"users": {"email": NEW_EMAIL}}, "mailer": {"contact": {"email": NEW_EMAIL}}}
    with receiver() as hooks:
        secret = (
            await client.post(
                "/v1/webhooks", json={"url": hooks.url, "events": ["external_task.created"]}, headers=shop
            )
        ).json()["secret"]
        request_id = await _request(
            client, shop, kind="rectification", systems=["crm", "mailer"], changes=changes
        )
        await send_due(settings, store_engine)
    (hit,) = hooks.hits
    event = hit.verify(secret)
    assert (event["type"], event["data"]["kind"], event["data"]["identity_types"]) == (
        "external_task.created",
        "rectification",
        ["email"],
    )
    path = f"/v1/requests/{request_id}/systems/mailer"
    read = await client.get(f"{path}/identities", headers=shop)
    assert read.status_code == 200, read.text
    assert read.json()["changes"] == {"contact": {"email": NEW_EMAIL}}  # its own system's only
    assert await drain(settings, store_engine) == 1
    assert (await client.post(f"{path}/complete", json={}, headers=shop)).status_code == 200
    assert (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()["status"] == "completed"

    for secret_value in (NEW_EMAIL, SUBJECT_EMAIL):
        assert secret_value not in hit.body.decode()
        assert secret_value not in msgspec.json.encode(await event_payloads(store_engine)).decode()
        assert secret_value not in await _audit_payloads(store_engine)
    logged = capfd.readouterr()
    assert NEW_EMAIL not in logged.out + logged.err


async def test_changes_for_an_external_system_need_a_record_and_a_field(
    client: AsyncTestClient[Litestar], auth: Headers
) -> None:
    shop = await _setup(client, auth)
    answer = await client.post(
        "/v1/requests",
        json={
            "kind": "rectification",
            "identities": {"email": SUBJECT_EMAIL},
            "systems": ["crm", "mailer"],
            "changes": {"crm": {"users": {"email": NEW_EMAIL}}, "mailer": {"contact": {}}},
        },
        headers=shop,
    )
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["body.changes.mailer"]


def _archive(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.mark.parametrize("report_first", [False, True], ids=["workers-first", "report-first"])
async def test_an_export_part_joins_the_subjects_export(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    report_first: bool,
) -> None:
    shop, request_id, path = await _start(client, auth, "access")
    if not report_first:
        assert await drain(settings, store_engine) == 1
        view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
        assert (view["status"], view["export_available"]) == ("awaiting_systems", False)
    done = await client.post(
        f"{path}/complete", json={"counts": {"contacts": 1}, "export_part": PART}, headers=shop
    )
    assert done.status_code == 200, done.text
    stored = (await _task(store_engine, request_id)).export_part
    assert stored is not None
    assert SUBJECT_EMAIL.encode() not in stored  # encrypted at rest
    assert (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()["status"] == "queued"
    assert await drain(settings, store_engine) == 1
    view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
    assert (view["status"], view["export_available"]) == ("completed", True)
    assert (await _task(store_engine, request_id)).export_part is None  # deleted once assembled

    document = (await client.get(f"/v1/requests/{request_id}/export?format=json", headers=shop)).json()
    assert list(document["systems"]) == ["crm", "mailer"]
    assert document["systems"]["crm"]["found"] is True
    section = document["systems"]["mailer"]
    assert (section["kind"], section["data"], section["counts"]) == ("external", PART, {"contacts": 1})
    assert (section["purpose"], section["recipients"]) == ("newsletters", ["Mail Provider Ltd"])
    zipped = await client.get(f"/v1/requests/{request_id}/export?format=zip", headers=shop)
    files = _archive(zipped.content)
    assert msgspec.json.decode(files["mailer/data.json"]) == PART
    assert msgspec.json.decode(files["mailer/metadata.json"])["kind"] == "external"
    assert "crm/users.csv" in files
    assert SUBJECT_EMAIL not in msgspec.json.encode(await event_payloads(store_engine)).decode()
    assert SUBJECT_EMAIL not in await _audit_payloads(store_engine)


async def test_without_a_part_the_export_still_completes(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    shop, request_id, path = await _start(client, auth, "access")
    assert await drain(settings, store_engine) == 1
    assert (await client.post(f"{path}/complete", json={}, headers=shop)).status_code == 200
    assert await drain(settings, store_engine) == 1
    document = (await client.get(f"/v1/requests/{request_id}/export?format=json", headers=shop)).json()
    assert document["systems"]["mailer"]["data"] is None
    assert document["systems"]["crm"]["found"] is True
    files = _archive((await client.get(f"/v1/requests/{request_id}/export?format=zip", headers=shop)).content)
    assert ("mailer/metadata.json" in files, "mailer/data.json" in files) == (True, False)


async def test_an_oversized_or_misplaced_part_is_refused_and_the_task_stays_pending(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    shop, access, path = await _start(client, auth, "access")
    big = {"contacts": ["x" * PART_LIMIT]}
    refused = await client.post(f"{path}/complete", json={"export_part": big}, headers=shop)
    assert refused.status_code == 413, refused.text
    assert refused.json()["type"] == "urn:lethe:problem:payload-too-large"
    not_json_container = await client.post(f"{path}/complete", json={"export_part": "text"}, headers=shop)
    assert not_json_container.status_code == 422, not_json_container.text
    task = await _task(store_engine, access)
    assert (task.status, task.export_part) == ("pending", None)

    async with store_engine.begin() as connection:
        await connection.execute(update(ExternalTask).values(status="completed"))  # out of the way
    erasure = await _request(client, shop, kind="erasure")
    misplaced = await client.post(
        f"/v1/requests/{erasure}/systems/mailer/complete", json={"export_part": PART}, headers=shop
    )
    assert misplaced.status_code == 422, misplaced.text
    assert [e["field"] for e in misplaced.json()["errors"]] == ["body.export_part"]
