"""External systems end to end: a task per request, told through a signed webhook, reported back
by its owner; the request waits for every system (SQLite and PostgreSQL store)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.config import Settings
from app.db.external import ExternalTask
from app.db.webhooks import WebhookEvent
from app.domain.external.tasks import announce_task_deadlines
from tests.conftest import make_settings
from tests.integration.requests_support import SUBJECT_EMAIL, TARGET_ENV, create_crm, drain, register_crm
from tests.integration.test_webhooks import send_due
from tests.integration.webhooks_support import CLIENT_SCOPES, receiver

Headers = Callable[..., dict[str, str]]
INVALID = "urn:lethe:problem:manifest-invalid"


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    return make_settings(
        tmp_path,
        database_url=store_url,
        webhook_allowed_hosts="127.0.0.1",
        approval_required="",
    )


@pytest.fixture(autouse=True)
async def crm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    await create_crm(url)
    monkeypatch.setenv(TARGET_ENV, url)
    return url


def mailer(notify: Any = "manual", due: str = "P7D") -> dict[str, Any]:
    return {
        "kind": "external",
        "system": "mailer",
        "purpose": "newsletters",
        "legal_basis": "consent (Art. 6(1)(a))",
        "categories": ["user.contact.email"],
        "recipients": ["Mail Provider Ltd"],
        "identities": ["email"],
        "notify": notify,
        "due": due,
    }


async def register(
    client: AsyncTestClient[Litestar], document: dict[str, Any], headers: dict[str, str]
) -> Any:
    return await client.post(
        "/v1/manifests",
        content=msgspec.json.encode(document),
        headers={**headers, "Content-Type": "application/json"},
    )


async def event_payloads(store: AsyncEngine) -> list[dict[str, Any]]:
    async with async_sessionmaker(store)() as session:
        return [e.payload for e in (await session.scalars(select(WebhookEvent).order_by(WebhookEvent.seq)))]


async def create(client: AsyncTestClient[Litestar], headers: dict[str, str], kind: str = "access") -> str:
    body = {"kind": kind, "identities": {"email": SUBJECT_EMAIL}}
    response = await client.post("/v1/requests", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def test_notify_then_complete_completes_the_request(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    processor = auth(*CLIENT_SCOPES, sub="mailer-bot", client_id="mailer-co")
    shop = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    with receiver() as hooks:
        created = await client.post(
            "/v1/webhooks", json={"url": hooks.url, "events": ["external_task.created"]}, headers=processor
        )
        subscription = created.json()
        await register_crm(client, auth())
        assert (await register(client, mailer({"webhook": subscription["id"]}), auth())).status_code == 201
        request_id = await create(client, shop, "erasure")
        assert await drain(settings, store_engine) == 1
        view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
        assert view["status"] == "awaiting_systems"
        assert [(t["system"], t["status"], t["overdue"]) for t in view["external_tasks"]] == [
            ("mailer", "pending", False)
        ]
        await send_due(settings, store_engine)
    (hit,) = hooks.hits
    event = hit.verify(subscription["secret"])
    assert event["type"] == "external_task.created"
    assert event["data"]["identity_types"] == ["email"]
    assert event["data"]["kind"] == "erasure"
    path = f"/v1/requests/{request_id}/systems/mailer"
    assert event["data"]["complete_url"] == f"{path}/complete"
    assert SUBJECT_EMAIL not in hit.body.decode()

    # another client, and even the request's own client, cannot act on the mailer's task
    intruder = auth(*CLIENT_SCOPES, sub="other", client_id="other")
    for headers in (intruder, shop):
        assert (await client.post(f"{path}/complete", json={}, headers=headers)).status_code == 404
        assert (await client.get(f"{path}/identities", headers=headers)).status_code == 404

    identities = await client.get(f"{path}/identities", headers=processor)
    assert identities.status_code == 200, identities.text
    assert identities.json()["identities"] == {"email": SUBJECT_EMAIL}
    assert (await client.get(f"{path}/identities", headers=processor)).status_code == 409

    done = await client.post(
        f"{path}/complete", json={"counts": {"contacts": 1}, "evidence": "TICKET-42"}, headers=processor
    )
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["counts"], done.json()["notify"]) == (
        "completed",
        {"contacts": 1},
        "webhook",
    )
    view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
    assert view["status"] == "completed"
    assert view["external_tasks"][0]["evidence"] == "TICKET-42"
    assert (await client.post(f"{path}/complete", json={}, headers=processor)).status_code == 409
    assert (await client.get(f"{path}/identities", headers=processor)).status_code == 409
    assert all(
        SUBJECT_EMAIL not in msgspec.json.encode(p).decode() for p in await event_payloads(store_engine)
    )


async def test_a_report_before_the_workers_finish_completes_with_them(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    shop = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    await register_crm(client, auth())
    await register(client, mailer(), auth())
    answer = await client.post(
        "/v1/requests", json={"kind": "access", "identities": {"email": SUBJECT_EMAIL}}, headers=shop
    )
    request_id = answer.json()["id"]
    assert [(t["system"], t["status"]) for t in answer.json()["external_tasks"]] == [("mailer", "pending")]
    path = f"/v1/requests/{request_id}/systems/mailer"
    assert (await client.post(f"{path}/complete", json={}, headers=shop)).status_code == 200
    (listed,) = (await client.get("/v1/requests", headers=shop)).json()["items"]
    assert [(t["system"], t["status"]) for t in listed["external_tasks"]] == [("mailer", "completed")]
    view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
    assert view["status"] == "queued"
    assert await drain(settings, store_engine) == 1
    view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
    assert (view["status"], view["export_available"]) == ("completed", True)


async def test_fail_fails_the_request(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    shop = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    with receiver() as hooks:
        subscription = (
            await client.post(
                "/v1/webhooks",
                json={"url": hooks.url, "events": ["external_task.created", "request.failed"]},
                headers=shop,
            )
        ).json()
        await register_crm(client, auth())
        await register(client, mailer(), auth())  # manual: the request's client is told
        request_id = await create(client, shop, "erasure")
        path = f"/v1/requests/{request_id}/systems/mailer"
        failed = await client.post(f"{path}/fail", json={"reason": "account locked"}, headers=shop)
        assert failed.status_code == 200, failed.text
        assert failed.json()["error"] == "account locked"
        assert await drain(settings, store_engine) == 0  # the workers have nothing left to do
        await send_due(settings, store_engine)
    view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
    assert view["status"] == "failed"
    assert "mailer" in view["failure_reason"]
    types = [hit.verify(subscription["secret"])["type"] for hit in hooks.hits]
    assert types == ["external_task.created", "request.failed"]
    assert (await client.post(f"{path}/complete", json={}, headers=shop)).status_code == 409


async def test_silence_is_announced_due_soon_then_overdue_once_each(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    shop = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    events = ["request.due_soon", "request.overdue"]
    with receiver() as hooks:
        subscription = (
            await client.post("/v1/webhooks", json={"url": hooks.url, "events": events}, headers=shop)
        ).json()
        await register_crm(client, auth())
        await register(client, mailer(due="PT3H"), auth())
        request_id = await create(client, shop)
        assert await drain(settings, store_engine) == 1
        assert await announce_task_deadlines(store_engine, 1) == 0  # not near yet
        assert await announce_task_deadlines(store_engine, 4) == 1  # due within 4 hours
        assert await announce_task_deadlines(store_engine, 4) == 0  # once
        async with store_engine.begin() as connection:
            await connection.execute(
                update(ExternalTask).values(due_at=datetime.now(UTC) - timedelta(minutes=1))
            )
        view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
        assert (view["status"], view["overdue"], view["export_available"]) == (
            "awaiting_systems",
            False,
            False,
        )
        export = await client.get(f"/v1/requests/{request_id}/export", headers=shop)
        assert export.status_code == 409  # the export waits for every system
        assert view["external_tasks"][0]["overdue"] is True
        assert await announce_task_deadlines(store_engine, 4) == 1
        assert await announce_task_deadlines(store_engine, 4) == 0  # once
        await send_due(settings, store_engine)
    sent = [hit.verify(subscription["secret"]) for hit in hooks.hits]
    assert [e["type"] for e in sent] == events
    assert [e["data"]["external_task"]["overdue"] for e in sent] == [False, True]
    assert {e["data"]["external_task"]["system"] for e in sent} == {"mailer"}
    assert all(SUBJECT_EMAIL not in hit.body.decode() for hit in hooks.hits)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"legal_basis": None}, "legal_basis"),
        ({"notify": {"webhook": "not-a-uuid"}}, "notify"),
        ({"due": "seven days"}, "due"),
        ({"connection": {"url_env": "X"}}, "connection"),
    ],
)
async def test_an_invalid_external_system_is_refused_naming_the_field(
    client: AsyncTestClient[Litestar], auth: Headers, change: dict[str, Any], field: str
) -> None:
    document = {k: v for k, v in {**mailer(), **change}.items() if v is not None}
    response = await register(client, document, auth())
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == INVALID
    assert problem["errors"][0]["field"].startswith(field)
    assert (await client.get("/v1/manifests/mailer", headers=auth())).status_code == 404


@contextmanager
def statements_on(*engines: AsyncEngine) -> Iterator[list[str]]:
    """Every statement sent on ``engines`` while inside."""
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    for engine in engines:
        event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine.sync_engine, "before_cursor_execute", note)


async def test_a_request_without_external_systems_never_looks_for_tasks(
    app: Litestar,
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
) -> None:
    """Creating, carrying out, viewing and listing a request that chose no external system sends
    no statement about external tasks or parts; one that holds a task still shows it."""
    await register_crm(client, auth())
    assert (await register(client, mailer(), auth())).status_code == 201
    body = {"kind": "erasure", "identities": {"email": SUBJECT_EMAIL}, "systems": ["crm"]}
    with statements_on(app.state["store_engine"], store_engine) as seen:
        created = await client.post("/v1/requests", json=body, headers=auth())
        assert created.status_code == 202, created.text
        request_id = created.json()["id"]
        assert await drain(settings, store_engine) == 1
        view = (await client.get(f"/v1/requests/{request_id}", headers=auth())).json()
        listed = (await client.get("/v1/requests", headers=auth())).json()
    assert view["status"] == "completed"
    assert view["external_tasks"] == []
    assert listed["items"][0]["external_tasks"] == []
    assert seen
    assert not [s for s in seen if "external_task" in s]

    holding = await create(client, auth(), "erasure")
    view = (await client.get(f"/v1/requests/{holding}", headers=auth())).json()
    assert [(t["system"], t["status"]) for t in view["external_tasks"]] == [("mailer", "pending")]
    listed = (await client.get("/v1/requests", headers=auth())).json()
    assert [[t["system"] for t in r["external_tasks"]] for r in listed["items"]] == [[], ["mailer"]]
