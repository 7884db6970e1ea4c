"""Art. 19 recipients end to end: listed when a rectification or erasure completes, told through a
signed ``recipient.notice`` webhook or recorded by hand; and tasks of a request that ends
otherwise are cancelled (SQLite and PostgreSQL store, a real receiver on loopback)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from app.config import Settings
from app.db.audit import AuditEvent
from app.db.external import ExternalTask
from app.domain.audit.sequencer import sequence_now
from app.domain.external.tasks import announce_task_deadlines
from tests.conftest import make_settings
from tests.integration.requests_support import SUBJECT_EMAIL, TARGET_ENV, crm_manifest, drain
from tests.integration.test_external_tasks import (  # noqa: F401 - crm: the target, a fixture
    create,
    crm,
    event_payloads,
    mailer,
    register,
)
from tests.integration.test_webhooks import send_due, subscribe
from tests.integration.webhooks_support import CLIENT_SCOPES, receiver

Headers = Callable[..., dict[str, str]]
INVALID = "urn:lethe:problem:manifest-invalid"
BILLING = {"name": "Billing Co", "client": "billing-co"}


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    return make_settings(
        tmp_path, database_url=store_url, webhook_allowed_hosts="127.0.0.1", approval_required=""
    )


def manifest() -> dict[str, Any]:
    """The CRM manifest with recipients: ``users`` goes to a subscribed service and to a desk told
    by hand, ``orders`` to a tax advisor, ``teams`` (kept as is by erasure) to a team tool."""
    document = crm_manifest()
    tables = document["tables"]
    tables["users"]["recipients"] = [BILLING, "support desk"]
    tables["orders"]["recipients"] = ["Tax Advisor"]
    tables["teams"]["recipients"] = [{"name": "Team Tool", "client": "team-tool"}]
    return document


def statuses(view: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {r["name"]: (r["status"], r["via"]) for r in view["recipients"]}


async def audit_events(store: AsyncEngine, action: str) -> list[AuditEvent]:
    await sequence_now(store)
    async with async_sessionmaker(store)() as session:
        return list((await session.scalars(select(AuditEvent).where(AuditEvent.action == action))).all())


async def billing_subscribes(client: AsyncTestClient[Litestar], auth: Headers, url: str) -> dict[str, str]:
    """The billing service subscribes to ``recipient.notice``; the manifest names it (and others)."""
    billing = auth(*CLIENT_SCOPES, sub="billing-bot", client_id="billing-co")
    subscription = await subscribe(client, billing, url, ["recipient.notice"])
    assert (await register(client, manifest(), auth())).status_code == 201
    return subscription


async def test_erasure_lists_recipients_and_tells_the_subscribed_ones(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    shop = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    with receiver() as hooks:
        subscription = await billing_subscribes(client, auth, hooks.url)
        external = {**mailer(), "recipients": [{"name": "Mail Provider Ltd", "client": "mailer-co"}]}
        assert (await register(client, external, auth())).status_code == 201
        request_id = await create(client, shop, "erasure")
        assert await drain(settings, store_engine) == 1
        view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
        assert (view["status"], view["recipients"]) == ("awaiting_systems", [])  # listed at completion
        done = await client.post(
            f"/v1/requests/{request_id}/systems/mailer/complete",
            json={"counts": {"contacts": 1}},
            headers=shop,
        )
        assert done.status_code == 200, done.text
        view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
        assert view["status"] == "completed"
        assert statuses(view) == {
            "Billing Co": ("pending", None),
            "support desk": ("manual", None),
            "Tax Advisor": ("manual", None),
            "Mail Provider Ltd": ("manual", None),  # its client has no subscription
        }  # "Team Tool": teams are kept by erasure (no row changed), so it is not listed
        listed = {r["name"]: r for r in view["recipients"]}
        assert listed["Billing Co"]["tables"] == {"crm": {"users": 1}}
        assert listed["Mail Provider Ltd"]["tables"] == {"mailer": {"contacts": 1}}
        assert "user.contact.email" in listed["Billing Co"]["categories"]
        await send_due(settings, store_engine)
    (hit,) = hooks.hits
    event = hit.verify(subscription["secret"])
    assert event["type"] == "recipient.notice"
    data = event["data"]
    assert (data["request_id"], data["kind"], data["recipient"]) == (request_id, "erasure", "Billing Co")
    assert data["subject_ref"] == view["subject_ref"]
    assert data["systems"] == {"crm": {"users": 1}}
    assert SUBJECT_EMAIL not in hit.body.decode()
    assert all(
        SUBJECT_EMAIL not in msgspec.json.encode(p).decode() for p in await event_payloads(store_engine)
    )

    view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
    notified = {r["name"]: r for r in view["recipients"]}["Billing Co"]
    assert (notified["status"], notified["via"]) == ("notified", "webhook")
    assert notified["notified_at"] is not None
    listed_page = (await client.get("/v1/requests", headers=shop)).json()["items"]
    assert statuses(listed_page[0]) == statuses(view)

    # a recipient without a subscription is told by hand, and that is recorded (and audited)
    path = f"/v1/requests/{request_id}/recipients/{quote('support desk')}/notified"
    recorded = await client.post(path, json={"evidence": "LETTER-2026-17"}, headers=shop)
    assert recorded.status_code == 200, recorded.text
    assert (recorded.json()["status"], recorded.json()["via"], recorded.json()["evidence"]) == (
        "notified",
        "manual",
        "LETTER-2026-17",
    )
    again = await client.post(path, json={}, headers=shop)
    assert again.status_code == 409
    webhook_told = f"/v1/requests/{request_id}/recipients/{quote('Billing Co')}/notified"
    assert (await client.post(webhook_told, json={}, headers=shop)).status_code == 409
    unknown = f"/v1/requests/{request_id}/recipients/{quote('Team Tool')}/notified"
    assert (await client.post(unknown, json={}, headers=shop)).status_code == 404
    other = auth(*CLIENT_SCOPES, sub="other", client_id="other")
    assert (
        await client.post(
            f"/v1/requests/{request_id}/recipients/{quote('Tax Advisor')}/notified", json={}, headers=other
        )
    ).status_code == 404
    view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
    assert statuses(view)["support desk"] == ("notified", "manual")
    (audited,) = await audit_events(store_engine, "recipient.notified")
    assert (audited.request_id, audited.actor) == (request_id, "shop")
    assert view["recipients"][audited.payload["recipient"]]["name"] == "support desk"
    assert audited.payload["was"] == "manual"
    assert audited.payload["evidence"] is True


async def test_rectification_lists_only_recipients_of_the_rectified_tables(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    shop = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    with receiver() as hooks:
        subscription = await billing_subscribes(client, auth, hooks.url)
        body = {
            "kind": "rectification",
            "identities": {"email": SUBJECT_EMAIL},
            "changes": {"crm": {"users": {"full_name": "Ada Lovelace-King"}}},
        }
        created = await client.post("/v1/requests", json=body, headers=shop)
        assert created.status_code == 202, created.text
        request_id = created.json()["id"]
        assert await drain(settings, store_engine) == 1
        await send_due(settings, store_engine)
    view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
    assert view["status"] == "completed"
    assert statuses(view) == {"Billing Co": ("notified", "webhook"), "support desk": ("manual", None)}
    (hit,) = hooks.hits
    data = hit.verify(subscription["secret"])["data"]
    assert (data["kind"], data["systems"], data["rows"]) == ("rectification", {"crm": {"users": 1}}, 1)
    assert "Lovelace" not in hit.body.decode()  # never the new value


async def test_access_and_dry_run_list_no_recipients(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    shop = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    assert (await register(client, manifest(), auth())).status_code == 201
    access = await create(client, shop, "access")
    dry = await client.post(
        "/v1/requests",
        json={"kind": "erasure", "dry_run": True, "identities": {"email": SUBJECT_EMAIL}},
        headers=shop,
    )
    assert await drain(settings, store_engine) == 2
    for request_id in (access, dry.json()["id"]):
        view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
        assert (view["status"], view["recipients"]) == ("completed", [])


async def test_a_failed_request_cancels_its_other_tasks(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    shop = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    assert (await register(client, manifest(), auth())).status_code == 201
    assert (await register(client, mailer(due="PT3H"), auth())).status_code == 201
    assert (await register(client, {**mailer(due="PT3H"), "system": "helpdesk"}, auth())).status_code == 201
    request_id = await create(client, shop, "erasure")
    failed = await client.post(
        f"/v1/requests/{request_id}/systems/mailer/fail", json={"reason": "account locked"}, headers=shop
    )
    assert failed.status_code == 200, failed.text
    async with store_engine.begin() as connection:  # past their own due time
        await connection.execute(update(ExternalTask).values(due_at=datetime.now(UTC) - timedelta(minutes=1)))
    view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
    assert view["status"] == "failed"
    assert [(t["system"], t["status"], t["overdue"]) for t in view["external_tasks"]] == [
        ("helpdesk", "cancelled", False),
        ("mailer", "failed", False),
    ]
    assert await announce_task_deadlines(store_engine, 4) == 0
    late = await client.post(f"/v1/requests/{request_id}/systems/helpdesk/complete", json={}, headers=shop)
    assert late.status_code == 409
    assert late.json()["type"] == "urn:lethe:problem:task-cancelled"
    assert "failed" in late.json()["detail"]
    (cancelled,) = await audit_events(store_engine, "external_task.cancelled")
    assert (cancelled.system, cancelled.payload["request_status"]) == ("helpdesk", "failed")


async def test_a_cancelled_request_cancels_its_tasks(
    client: AsyncTestClient[Litestar], auth: Headers, store_engine: AsyncEngine
) -> None:
    shop = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    assert (await register(client, manifest(), auth())).status_code == 201
    assert (await register(client, mailer(), auth())).status_code == 201
    request_id = await create(client, shop, "access")
    assert (await client.post(f"/v1/requests/{request_id}/cancel", headers=shop)).status_code == 200
    view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
    assert [(t["system"], t["status"]) for t in view["external_tasks"]] == [("mailer", "cancelled")]
    late = await client.post(
        f"/v1/requests/{request_id}/systems/mailer/fail", json={"reason": "x"}, headers=shop
    )
    assert (late.status_code, late.json()["type"]) == (409, "urn:lethe:problem:task-cancelled")


@pytest.mark.parametrize(
    ("recipients", "field"),
    [
        ([{"name": "Billing Co", "clent": "billing-co"}], "tables.users.recipients[0]"),
        ([{"client": "billing-co"}], "tables.users.recipients[0]"),
        ([{"name": "Billing Co", "client": "has spaces"}], "tables.users.recipients[0]"),
        (["", "x"], "tables.users.recipients"),
        (["desk", {"name": "desk"}], "tables.users"),
    ],
)
async def test_malformed_recipients_are_refused_naming_the_field(
    client: AsyncTestClient[Litestar], auth: Headers, recipients: list[Any], field: str
) -> None:
    document = manifest()
    document["tables"]["users"]["recipients"] = recipients
    response = await register(client, document, auth())
    assert response.status_code == 422, response.text
    assert response.json()["type"] == INVALID
    assert response.json()["errors"][0]["field"].startswith(field), response.json()["errors"]
    twice = await register(client, {**mailer(), "recipients": ["a", {"name": "a", "client": "c"}]}, auth())
    assert twice.status_code == 422
    assert twice.json()["errors"][0]["field"] == "recipients"


async def test_a_request_the_workers_fail_cancels_its_tasks(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    shop = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    assert (await register(client, manifest(), auth())).status_code == 201
    assert (await register(client, mailer(), auth())).status_code == 201
    request_id = await create(client, shop, "erasure")
    target = create_async_engine(os.environ[TARGET_ENV])
    async with target.begin() as connection:  # the target changed under the manifest: erasure fails
        await connection.execute(text("DROP TABLE team_members"))
    await target.dispose()
    assert await drain(settings, store_engine) == 1
    view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
    assert view["status"] == "failed"
    assert [(t["system"], t["status"], t["overdue"]) for t in view["external_tasks"]] == [
        ("mailer", "cancelled", False)
    ]
    assert view["recipients"] == []
    late = await client.post(f"/v1/requests/{request_id}/systems/mailer/complete", json={}, headers=shop)
    assert (late.status_code, late.json()["type"]) == (409, "urn:lethe:problem:task-cancelled")
