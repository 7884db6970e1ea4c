"""Webhooks end to end: subscriptions, the outbox, signed deliveries to a real receiver on loopback."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.asgi import create_app
from app.config import Settings
from app.db.requests import SubjectRequest
from app.db.webhooks import WebhookDelivery, WebhookEvent
from app.domain.requests import services as request_services
from app.domain.requests.schemas import RequestIn
from app.domain.webhooks.deadlines import announce_deadlines, purge_finished
from app.domain.webhooks.delivery import DeliveryWorker
from app.lib.auth import Principal
from tests.conftest import make_settings
from tests.integration.requests_support import SUBJECT_EMAIL, TARGET_ENV, create_crm, drain, register_crm
from tests.integration.webhooks_support import CLIENT_SCOPES, receiver, until

Headers = Callable[..., dict[str, str]]
REFUSED = "urn:lethe:problem:webhook-destination-refused"


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    """Loopback receivers allow-listed; retries fast enough for a test."""
    return make_settings(
        tmp_path,
        database_url=store_url,
        webhook_allowed_hosts="127.0.0.1",
        webhook_backoff_base_seconds="0.05",
        webhook_backoff_max_seconds="0.2",
    )


@pytest.fixture
async def crm_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A CRM target on SQLite (webhooks do not depend on the target's dialect)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    await create_crm(url)
    monkeypatch.setenv(TARGET_ENV, url)
    return url


async def send_due(settings: Settings, store: AsyncEngine, *, rounds: int = 1) -> int:
    """Run one delivery worker until nothing is due, ``rounds`` times; how many attempts it made."""
    worker = DeliveryWorker(settings, store, "test")
    sent = 0
    try:
        for _ in range(rounds):
            while attempted := await worker.run_batch():
                sent += attempted
    finally:
        await worker.close()
    return sent


async def deliveries(store: AsyncEngine) -> list[WebhookDelivery]:
    sessions = async_sessionmaker(store, expire_on_commit=False)
    async with sessions() as session:
        return list(
            (await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.event_seq))).all()
        )


async def subscribe(
    client: AsyncTestClient[Litestar], headers: dict[str, str], url: str, events: list[str]
) -> dict[str, str]:
    response = await client.post("/v1/webhooks", json={"url": url, "events": events}, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.mark.usefixtures("crm_sqlite")
async def test_request_events_arrive_signed_in_order_without_identities(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    await register_crm(client, auth())
    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    with receiver() as hooks:
        created = await subscribe(
            client, caller, hooks.url, ["request.received", "request.completed", "export.ready"]
        )
        assert created["secret"].startswith("whsec_")
        listed = (await client.get("/v1/webhooks", headers=caller)).json()["items"]
        assert [s["id"] for s in listed] == [created["id"]]
        assert listed[0]["secret"] is None
        body = {"kind": "access", "identities": {"email": SUBJECT_EMAIL}}
        request_id = (await client.post("/v1/requests", json=body, headers=caller)).json()["id"]
        assert await drain(settings, store_engine) == 1
        assert await send_due(settings, store_engine) == 3
    events = [hit.verify(created["secret"]) for hit in hooks.hits]
    assert [e["type"] for e in events] == ["request.received", "request.completed", "export.ready"]
    assert {e["data"]["request_id"] for e in events} == {request_id}
    assert events[0]["data"]["status"] == "received"  # announced as received, though stored queued
    assert events[1]["data"]["status"] == "completed"
    assert events[1]["data"]["systems"][0]["counts"]["users"] == 1
    assert all(SUBJECT_EMAIL not in hit.body.decode() for hit in hooks.hits)
    assert len({hit.message_id for hit in hooks.hits}) == 3
    page = (await client.get("/v1/webhooks/deliveries", headers=caller)).json()["items"]
    assert [(d["event_type"], d["status"], d["last_status_code"], d["attempts"]) for d in page] == [
        ("request.received", "delivered", 200, 1),
        ("request.completed", "delivered", 200, 1),
        ("export.ready", "delivered", 200, 1),
    ]
    assert page[0]["history"][0]["latency_ms"] >= 0
    assert page[0]["next_attempt_at"] is None


async def test_failing_receiver_gets_the_event_accepted_exactly_once(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    with receiver(script=(500, 500, 500)) as hooks:
        created = await subscribe(client, caller, hooks.url, ["retention.run_failed", "request.received"])
        await emit_received(settings, store_engine, "shop")

        async def accepted() -> bool:
            await send_due(settings, store_engine)
            return any(hit.answered == 200 for hit in hooks.hits)

        await until(accepted, seconds=20)
        await send_due(settings, store_engine)
    assert [hit.answered for hit in hooks.hits] == [500, 500, 500, 200]
    assert len({hit.message_id for hit in hooks.hits}) == 1
    for hit in hooks.hits:
        hit.verify(created["secret"])
    (delivery,) = await deliveries(store_engine)
    assert (delivery.status, delivery.attempts) == ("delivered", 4)
    assert [h["status_code"] for h in delivery.history] == [500, 500, 500, 200]
    metrics = (await client.get("/metrics")).text
    assert 'lethe_webhook_attempts_total{outcome="retry"}' in metrics
    assert 'lethe_webhook_attempts_total{outcome="delivered"}' in metrics


async def test_retries_stop_dead_after_the_period_and_redeliver_replays(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    tmp_path: Path,
    store_url: str,
    store_engine: AsyncEngine,
) -> None:
    short = make_settings(
        tmp_path,
        database_url=store_url,
        webhook_allowed_hosts="127.0.0.1",
        webhook_backoff_base_seconds="0.2",
        webhook_retry_period_seconds="3",  # room for two attempts on a loaded machine
    )
    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    with receiver(script=(503,) * 50) as hooks:
        await subscribe(client, caller, hooks.url, ["request.received"])
        await emit_received(short, store_engine, "shop")

        async def dead() -> bool:
            await send_due(short, store_engine)
            return (await deliveries(store_engine))[0].status == "dead"

        await until(dead, seconds=20)
        failed_attempts = len(hooks.hits)
        assert failed_attempts >= 2
        page = (await client.get("/v1/webhooks/deliveries?status=dead", headers=caller)).json()["items"]
        assert page[0]["next_attempt_at"] is None
        hooks.script.clear()
        answer = await client.post(f"/v1/webhooks/deliveries/{page[0]['id']}/redeliver", headers=caller)
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "pending"
        assert await send_due(short, store_engine) == 1
    assert hooks.hits[-1].answered == 200
    assert {hit.message_id for hit in hooks.hits} == {hooks.hits[0].message_id}
    assert (await deliveries(store_engine))[0].status == "delivered"


async def emit_received(settings: Settings, store: AsyncEngine, client_id: str) -> None:
    """Write a ``request.received`` event the way a request does (no target needed)."""
    from app.domain.webhooks.outbox import emit

    sessions = async_sessionmaker(store, expire_on_commit=False)
    async with sessions() as session, session.begin():
        await emit(
            session,
            "request.received",
            {"request_id": str(uuid.uuid4()), "kind": "access", "status": "received"},
            client_id=client_id,
            request_id=uuid.uuid4(),
        )


@pytest.mark.usefixtures("crm_sqlite")
async def test_a_rolled_back_transition_sends_nothing(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    await register_crm(client, auth())
    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    principal = Principal(sub="shop", client_id="shop", scopes=frozenset(CLIENT_SCOPES))
    with receiver() as hooks:
        await subscribe(client, caller, hooks.url, ["request.received", "request.awaiting_approval"])
        sessions = async_sessionmaker(store_engine, expire_on_commit=False)
        body = RequestIn(kind="access", identities={"email": SUBJECT_EMAIL})

        async def create_then_fail() -> None:
            async with sessions() as session, session.begin():
                await request_services.create_request(session, settings, principal, body)
                assert await session.scalar(select(func.count()).select_from(WebhookEvent)) == 1
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError, match="rolled back"):
            await create_then_fail()
        assert await send_due(settings, store_engine) == 0
        async with sessions() as session:
            assert await session.scalar(select(func.count()).select_from(WebhookEvent)) == 0
            assert await session.scalar(select(func.count()).select_from(SubjectRequest)) == 0
        # the same request committed is announced
        async with sessions() as session, session.begin():
            await request_services.create_request(session, settings, principal, body)
        assert await send_due(settings, store_engine) == 1
    assert [hit.event["type"] for hit in hooks.hits] == ["request.received"]


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/hooks",
        "https://[::1]/hooks",
        "https://100.64.0.1/hooks",
        "http://93.184.215.14/hooks",
        "ftp://93.184.215.14/hooks",
        "https://user:pw@93.184.215.14/hooks",
    ],
)
async def test_a_private_or_plain_destination_is_refused(
    auth: Headers, url: str, tmp_path: Path, store_url: str
) -> None:
    strict = make_settings(tmp_path, database_url=store_url)  # no allow-list
    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    async with AsyncTestClient(app=create_app(strict)) as client:
        response = await client.post(
            "/v1/webhooks", json={"url": url, "events": ["request.received"]}, headers=caller
        )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"] == REFUSED
        assert response.json()["errors"][0]["field"] == "body.url"
        assert (await client.get("/v1/webhooks", headers=caller)).json()["items"] == []


@pytest.mark.usefixtures("crm_sqlite")
async def test_a_private_callback_url_refuses_the_request(
    client: AsyncTestClient[Litestar], auth: Headers, store_engine: AsyncEngine
) -> None:
    await register_crm(client, auth())
    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    body = {
        "kind": "access",
        "identities": {"email": SUBJECT_EMAIL},
        "callback_url": "https://10.0.0.1/hooks",
    }
    response = await client.post("/v1/requests", json=body, headers=caller)
    assert response.status_code == 422
    assert response.json()["type"] == REFUSED
    assert response.json()["errors"][0]["field"] == "body.callback_url"
    assert (await client.get("/v1/requests", headers=caller)).json()["items"] == []


@pytest.mark.usefixtures("crm_sqlite")
async def test_callback_url_receives_that_request_signed_with_its_secret(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    await register_crm(client, auth())
    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    with receiver() as hooks:
        body = {"kind": "access", "identities": {"email": SUBJECT_EMAIL}, "callback_url": hooks.url}
        created = (await client.post("/v1/requests", json=body, headers=caller)).json()
        other = {"kind": "access", "identities": {"email": SUBJECT_EMAIL}}
        await client.post("/v1/requests", json=other, headers=caller)
        assert created["callback_secret"].startswith("whsec_")
        assert (await client.get(f"/v1/requests/{created['id']}", headers=caller)).json()[
            "callback_secret"
        ] is None
        await drain(settings, store_engine)
        await send_due(settings, store_engine)
    events = [hit.verify(created["callback_secret"]) for hit in hooks.hits]
    assert [e["type"] for e in events] == ["request.received", "request.completed", "export.ready"]
    assert {e["data"]["request_id"] for e in events} == {created["id"]}


async def test_subscriptions_belong_to_their_client(client: AsyncTestClient[Litestar], auth: Headers) -> None:
    shop = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    other = auth(*CLIENT_SCOPES, sub="other", client_id="other")
    with receiver() as hooks:
        created = await subscribe(client, shop, hooks.url, ["request.completed"])
    assert (await client.get("/v1/webhooks", headers=other)).json()["items"] == []
    patched = await client.patch(f"/v1/webhooks/{created['id']}", json={"active": False}, headers=other)
    assert patched.status_code == 404
    assert (await client.delete(f"/v1/webhooks/{created['id']}", headers=other)).status_code == 404
    reader = auth("webhooks:read", sub="shop", client_id="shop")
    forbidden = await client.post(
        "/v1/webhooks", json={"url": hooks.url, "events": ["request.completed"]}, headers=reader
    )
    assert forbidden.status_code == 403
    assert (await client.delete(f"/v1/webhooks/{created['id']}", headers=shop)).status_code == 204
    assert (await client.get("/v1/webhooks", headers=shop)).json()["items"] == []


async def test_a_rotated_secret_and_the_previous_one_both_sign(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    with receiver() as hooks:
        created = await subscribe(client, caller, hooks.url, ["request.received"])
        rotated = await client.patch(
            f"/v1/webhooks/{created['id']}", json={"rotate_secret": True}, headers=caller
        )
        assert rotated.status_code == 200, rotated.text
        new_secret = rotated.json()["secret"]
        assert new_secret not in (None, created["secret"])
        assert rotated.json()["previous_secret_expires_at"] is not None
        await emit_received(settings, store_engine, "shop")
        await send_due(settings, store_engine)
    (hit,) = hooks.hits
    assert len(hit.headers["webhook-signature"].split(" ")) == 2
    assert hit.verify(created["secret"]) == hit.verify(new_secret)


async def test_the_destination_is_checked_again_when_sending(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    tmp_path: Path,
    store_url: str,
    store_engine: AsyncEngine,
) -> None:
    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    strict = make_settings(tmp_path, database_url=store_url)  # no allow-list: loopback is refused
    with receiver() as hooks:
        await subscribe(client, caller, hooks.url, ["request.received"])
        await emit_received(strict, store_engine, "shop")
        assert await send_due(strict, store_engine) == 1
    assert hooks.hits == []
    (delivery,) = await deliveries(store_engine)
    assert (delivery.status, delivery.last_error, delivery.last_status_code) == (
        "pending",
        "destination_refused",
        None,
    )


@pytest.mark.usefixtures("crm_sqlite")
async def test_due_soon_and_overdue_are_announced_once(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    await register_crm(client, auth())
    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    with receiver() as hooks:
        await subscribe(client, caller, hooks.url, ["request.due_soon", "request.overdue"])
        body = {"kind": "access", "identities": {"email": SUBJECT_EMAIL}}
        request_id = uuid.UUID((await client.post("/v1/requests", json=body, headers=caller)).json()["id"])
        now = datetime.now(UTC)
        assert await announce_deadlines(settings, store_engine, now) == 0  # a month away
        async with store_engine.begin() as connection:
            await connection.execute(
                update(SubjectRequest)
                .where(SubjectRequest.id == request_id)
                .values(due_at=now + timedelta(hours=5))
            )
        assert await announce_deadlines(settings, store_engine, now) == 1
        assert await announce_deadlines(settings, store_engine, now) == 0
        assert await announce_deadlines(settings, store_engine, now + timedelta(hours=6)) == 1
        assert await announce_deadlines(settings, store_engine, now + timedelta(hours=7)) == 0
        await send_due(settings, store_engine)
    assert [hit.event["type"] for hit in hooks.hits] == ["request.due_soon", "request.overdue"]


async def test_a_request_s_later_event_waits_for_an_earlier_one_still_failing(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    with receiver(script=(500, 500)) as hooks:
        await subscribe(client, caller, hooks.url, ["request.received", "request.completed"])
        await emit_pairs(store_engine, [uuid.uuid4()])

        async def both_delivered() -> bool:
            await send_due(settings, store_engine)
            return all(d.status == "delivered" for d in await deliveries(store_engine))

        await until(both_delivered, seconds=20)
    assert [(hit.event["type"], hit.answered) for hit in hooks.hits] == [
        ("request.received", 500),
        ("request.received", 500),
        ("request.received", 200),
        ("request.completed", 200),
    ]


async def emit_pairs(store: AsyncEngine, requests: list[uuid.UUID]) -> None:
    """``request.received`` for each request, then ``request.completed`` for each (client ``shop``)."""
    from app.domain.webhooks.outbox import emit

    sessions = async_sessionmaker(store, expire_on_commit=False)
    for event_type in ("request.received", "request.completed"):
        for request_id in requests:
            async with sessions() as session, session.begin():
                await emit(
                    session,
                    event_type,
                    {"request_id": str(request_id)},
                    client_id="shop",
                    request_id=request_id,
                )


async def test_a_batch_sends_one_event_per_request_at_a_time(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    from app.domain.webhooks.delivery import DeliveryWorker

    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    worker = DeliveryWorker(settings, store_engine, "batch")
    with receiver() as hooks:
        await subscribe(client, caller, hooks.url, ["request.received", "request.completed"])
        await emit_pairs(store_engine, [uuid.uuid4() for _ in range(5)])
        try:
            assert await worker.run_batch() == 5  # the first event of each request, together
            assert await worker.run_batch() == 5  # then the second of each
            assert await worker.run_batch() == 0
        finally:
            await worker.close()
    assert [hit.event["type"] for hit in hooks.hits] == ["request.received"] * 5 + ["request.completed"] * 5
    assert all(d.status == "delivered" for d in await deliveries(store_engine))


async def test_concurrent_senders_deliver_each_event_once(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    with receiver() as hooks:
        await subscribe(client, caller, hooks.url, ["request.received"])
        for _ in range(30):
            await emit_received(settings, store_engine, "shop")
        workers = 1 if settings.is_sqlite else 4
        sent = await asyncio.gather(*(send_due(settings, store_engine) for _ in range(workers)))
    assert sum(sent) == 30
    assert len(hooks.hits) == 30
    assert len({hit.message_id for hit in hooks.hits}) == 30


@pytest.mark.usefixtures("crm_sqlite")
async def test_old_finished_deliveries_are_purged_but_an_open_request_keeps_its_deadline_events(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine
) -> None:
    await register_crm(client, auth())
    caller = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    with receiver() as hooks:
        await subscribe(client, caller, hooks.url, ["request.received", "request.overdue"])
        body = {"kind": "access", "identities": {"email": SUBJECT_EMAIL}}
        request_id = uuid.UUID((await client.post("/v1/requests", json=body, headers=caller)).json()["id"])
        now = datetime.now(UTC)
        async with store_engine.begin() as connection:
            await connection.execute(
                update(SubjectRequest)
                .where(SubjectRequest.id == request_id)
                .values(due_at=now - timedelta(hours=1))
            )
        assert await announce_deadlines(settings, store_engine, now) == 1
        await send_due(settings, store_engine)
    assert len(hooks.hits) == 2
    assert await purge_finished(store_engine, 30, now) == 0  # too recent
    assert await purge_finished(store_engine, 30, now + timedelta(days=31)) == 2
    sessions = async_sessionmaker(store_engine, expire_on_commit=False)
    async with sessions() as session:
        left = (await session.scalars(select(WebhookEvent.type))).all()
    assert left == ["request.overdue"]  # still open: not announced again
    assert await announce_deadlines(settings, store_engine, now) == 0
