"""The consent ledger over HTTP, and the promise that no identity is ever stored in clear."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db.audit import ErasureTombstone
from app.domain.audit.chain import verify_chain
from app.domain.audit.references import subject_reference, tombstone_reference
from app.domain.audit.sequencer import sequence_now
from app.domain.audit.services import append
from app.domain.consent.services import consent_history
from tests.conftest import TEST_AUDIT_KEY

Client = AsyncTestClient[Litestar]
Auth = Callable[..., dict[str, str]]
TEXT_HASH = hashlib.sha256(b"We may e-mail you offers.").hexdigest()
T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def _consent(
    subject: str,
    *,
    granted: bool,
    purpose: str = "marketing",
    at: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": subject,
        "purpose": purpose,
        "granted": granted,
        "policy_version": "2026-01",
        "text_hash": TEXT_HASH,
        "source": "web-form",
    }
    if at is not None:
        body["occurred_at"] = at.isoformat()
    return body | extra


async def _post(client: Client, auth: Auth, body: dict[str, Any], key: str | None = None) -> Any:
    headers = auth("consent:write") | ({"Idempotency-Key": key} if key else {})
    return await client.post("/v1/consents", json=body, headers=headers)


async def _status(
    client: Client,
    auth: Auth,
    subject: str,
    purpose: str = "marketing",
    as_of: datetime | None = None,
) -> dict[str, Any]:
    params = {"subject": subject, "purpose": purpose} | ({"as_of": as_of.isoformat()} if as_of else {})
    response = await client.get("/v1/consents/status", params=params, headers=auth("consent:read"))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def _count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def test_consents_need_a_token_and_scopes(client: Client, auth: Auth) -> None:
    body = _consent("dana@example.com", granted=True)
    assert (await client.post("/v1/consents", json=body)).status_code == 401
    assert (await client.get("/v1/consents", params={"subject": "x"})).status_code == 401
    assert (await client.post("/v1/consents", json=body, headers=auth("consent:read"))).status_code == 403
    params = {"subject": "x", "purpose": "marketing"}
    denied = await client.get("/v1/consents/status", params=params, headers=auth("consent:write"))
    assert denied.status_code == 403


async def test_grant_withdraw_status_and_history(
    client: Client, auth: Auth, store_engine: AsyncEngine
) -> None:
    created = await _post(client, auth, _consent("Erin@Example.com", granted=True, at=T0))
    assert created.status_code == 201, created.text
    event = created.json()
    assert event["subject_ref"] == subject_reference(TEST_AUDIT_KEY, None, "email", "erin@example.com")
    # the mirroring audit event is pending at the response; the audit log lists it linked, as seq 1
    assert (event["actor"], event["granted"], event["audit_seq"]) == ("test-operator", True, None)
    mirrored = (await client.get("/v1/audit/events", headers=auth("audit:read"))).json()["items"]
    assert [(e["seq"], e["event_id"], e["action"]) for e in mirrored] == [
        (1, event["audit_event_id"], "consent.granted")
    ]
    assert "subject" not in event

    assert (await _status(client, auth, "erin@example.com"))["status"] == "granted"
    await _post(client, auth, _consent("erin@example.com", granted=False, at=T0 + timedelta(days=2)))
    # a grant and a withdrawal at the same instant: the withdrawal wins, whatever the order
    await _post(client, auth, _consent("erin@example.com", granted=False, at=T0 + timedelta(days=4)))
    await _post(client, auth, _consent("erin@example.com", granted=True, at=T0 + timedelta(days=4)))

    assert (await _status(client, auth, "erin@example.com", as_of=T0 - timedelta(days=1)))[
        "status"
    ] == "unknown"
    assert (await _status(client, auth, "erin@example.com", as_of=T0 + timedelta(days=1)))["granted"] is True
    assert (await _status(client, auth, "erin@example.com", as_of=T0 + timedelta(days=3)))[
        "status"
    ] == "withdrawn"
    now = await _status(client, auth, " ERIN@example.com")
    assert (now["status"], now["granted"], now["policy_version"]) == ("withdrawn", False, "2026-01")
    assert (await _status(client, auth, "erin@example.com", purpose="analytics"))["status"] == "unknown"

    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"subject": "erin@example.com", "limit": 3} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/v1/consents", params=params, headers=auth("consent:read"))).json()
        pages.append(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    items = [item for page in pages for item in page["items"]]
    assert len(pages) == 2
    assert [i["occurred_at"][:10] for i in items] == [
        "2026-01-10",
        "2026-01-12",
        "2026-01-14",
        "2026-01-14",
    ]

    await sequence_now(store_engine)
    async with AsyncSession(store_engine) as session:
        history = await consent_history(session, event["subject_ref"])
        assert len(history) == 4
        report = await verify_chain(session)
    assert (report.ok, report.head_seq) == (True, 4)


async def test_consent_input_is_validated(client: Client, auth: Auth) -> None:
    bad = [
        _consent("f@example.com", granted=True, text_hash="not-a-hash"),
        _consent("f@example.com", granted=True, purpose="free text purpose"),
        _consent("f@example.com", granted=True, at=datetime(2026, 1, 1)),  # noqa: DTZ001 - naive on purpose
        _consent("f@example.com", granted=True, unknown_field=1),
    ]
    for body in bad:
        assert (await _post(client, auth, body)).status_code == 422, body


async def test_idempotent_consent(client: Client, auth: Auth, store_engine: AsyncEngine) -> None:
    body = _consent("gina@example.com", granted=True)
    first = await _post(client, auth, body, key="consent-key-1")
    again = await _post(client, auth, body, key="consent-key-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert await _count(store_engine, "consent_event") == 1
    await sequence_now(store_engine)
    assert await _count(store_engine, "audit_event") == 1
    changed = await _post(client, auth, body | {"granted": False}, key="consent-key-1")
    assert changed.status_code == 422
    assert changed.json()["type"] == "urn:lethe:problem:idempotency-key-reused"
    assert await _count(store_engine, "consent_event") == 1


async def test_a_keyed_consent_sent_twice_at_once_is_recorded_once(
    client: Client, auth: Auth, store_engine: AsyncEngine
) -> None:
    body = _consent("twice@example.com", granted=True)
    first, second = await asyncio.gather(*(_post(client, auth, body, key="twice") for _ in range(2)))
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json() == second.json()
    replayed = [first.headers.get("idempotent-replayed"), second.headers.get("idempotent-replayed")]
    assert sorted(replayed, key=str) == sorted([None, "true"], key=str)
    assert await _count(store_engine, "consent_event") == 1
    await sequence_now(store_engine)
    assert await _count(store_engine, "audit_event") == 1
    other = await _post(client, auth, body | {"purpose": "analytics"}, key="twice")
    assert other.status_code == 422
    assert other.json()["type"] == "urn:lethe:problem:idempotency-key-reused"


IDENTITIES = ["hana@example.com", "Hana@Example.com", "ivan.petrov@example.org", "user-770301"]


def _readable(value: object) -> str:
    """A column value as text; binary values count where they decode as UTF-8 (stored JSON bodies):
    random bytes (binary ids on SQLite) can contain any character, '@' included."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return ""
    return str(value)


async def test_no_identity_is_stored_in_clear(client: Client, auth: Auth, store_engine: AsyncEngine) -> None:
    for subject in IDENTITIES[:3]:
        await _post(client, auth, _consent(subject, granted=True), key=f"k-{uuid.uuid4()}")
    await _post(client, auth, _consent("user-770301", granted=False, subject_type="user_id"))
    await sequence_now(store_engine)  # the consents' events linked, the next one left pending
    async with AsyncSession(store_engine) as session:
        await append(
            session,
            action="erasure.completed",
            actor="worker",
            request_id="req-9",
            system="shop",
            subject_ref=subject_reference(TEST_AUDIT_KEY, "shop", "user_id", "user-770301"),
            payload={"tables": ["users", "orders"], "rows": 3},
        )
        session.add(
            ErasureTombstone(
                id=uuid.uuid4(),
                system="shop",
                request_id="req-9",
                subject_key_ref=tombstone_reference(TEST_AUDIT_KEY, "shop", "user-770301"),
                erased_at=datetime.now(UTC),
            )
        )
        await session.commit()
    dump = []
    async with store_engine.connect() as connection:
        for table in (
            "audit_event",
            "audit_pending",
            "consent_event",
            "erasure_tombstone",
            "idempotency_record",
        ):
            rows = (await connection.execute(text(f"SELECT * FROM {table}"))).all()
            assert rows or table == "idempotency_record"
            dump.extend(_readable(value) for row in rows for value in row)
    haystack = "\n".join(dump).casefold()
    assert "shop" in haystack  # the dump itself works
    for identity in [*IDENTITIES, "example.com", "@"]:
        assert identity.casefold() not in haystack, identity
