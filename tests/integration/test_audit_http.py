"""``/v1/audit`` over HTTP: scopes, filters, pagination, verification, checkpoints."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.asgi import create_app
from app.config import Settings
from app.domain.audit.references import subject_reference
from app.domain.audit.services import append
from app.lib.crypto import generate_signing_key_pem
from tests.conftest import TEST_AUDIT_KEY, make_settings
from tests.integration.audit_support import append_events, as_owner

SIGNING_KEY = generate_signing_key_pem()
Client = AsyncTestClient[Litestar]
Auth = Callable[..., dict[str, str]]


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    """Test settings with a signing key and a small page bound."""
    return make_settings(tmp_path, database_url=store_url, audit_signing_key=SIGNING_KEY, max_page_size="5")


async def _seed(engine: AsyncEngine) -> None:
    alice_shop = subject_reference(TEST_AUDIT_KEY, "shop", "email", "alice@example.com")
    alice_any = subject_reference(TEST_AUDIT_KEY, None, "email", "alice@example.com")
    bob_shop = subject_reference(TEST_AUDIT_KEY, "shop", "email", "bob@example.com")
    rows: list[dict[str, Any]] = [
        {"action": "request.received", "request_id": "req-1", "subject_ref": alice_any},
        {
            "action": "erasure.table",
            "request_id": "req-1",
            "system": "shop",
            "subject_ref": alice_shop,
            "payload": {"table": "users", "rows": 1},
        },
        {"action": "request.received", "request_id": "req-2", "subject_ref": bob_shop},
        {
            "action": "erasure.table",
            "request_id": "req-2",
            "system": "shop",
            "subject_ref": bob_shop,
        },
        {"action": "request.completed", "request_id": "req-1", "subject_ref": alice_any},
    ]
    for row in rows:
        async with AsyncSession(engine) as session:
            await append(session, actor="test-operator", **row)
            await session.commit()


async def _all_pages(client: Client, headers: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = dict(query, **({"cursor": cursor} if cursor else {}))
        response = await client.get("/v1/audit/events", params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def test_audit_needs_a_token_and_the_audit_scope(client: Client, auth: Auth) -> None:
    for path in ("/v1/audit/events", "/v1/audit/verify", "/v1/audit/checkpoints"):
        missing = await client.get(path)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = await client.get(path, headers=auth("consent:read", "requests:read"))
        assert wrong.status_code == 403
        assert wrong.json()["type"] == "urn:lethe:problem:insufficient-scope"
        assert (await client.get(path, headers=auth("audit:read"))).status_code == 200


async def test_events_filters(client: Client, auth: Auth, store_engine: AsyncEngine) -> None:
    await _seed(store_engine)
    headers = auth("audit:read")

    async def seqs(**query: Any) -> list[int]:
        return [e["seq"] for e in await _all_pages(client, headers, **query)]

    assert await seqs() == [1, 2, 3, 4, 5]
    assert await seqs(action="request.received") == [1, 3]
    assert await seqs(request_id="req-1") == [1, 2, 5]
    assert await seqs(system="shop") == [2, 4]
    # an identity finds its events in every system, whatever its case and surrounding spaces
    assert await seqs(subject_type="email", subject=" Alice@Example.COM ") == [1, 2, 5]
    assert await seqs(subject_type="email", subject="alice@example.com", system="shop") == [2]
    assert await seqs(subject_type="email", subject="carol@example.com") == []
    assert await seqs(action="erasure.table", subject_type="email", subject="bob@example.com") == [4]
    now = datetime.now(UTC)
    assert await seqs(since=(now - timedelta(minutes=5)).isoformat()) == [1, 2, 3, 4, 5]
    assert await seqs(until=(now - timedelta(minutes=5)).isoformat()) == []
    assert await seqs(since=(now + timedelta(minutes=5)).isoformat()) == []
    bad = await client.get("/v1/audit/events", params={"subject": "x@example.com"}, headers=headers)
    assert bad.status_code == 422


async def test_events_pagination(client: Client, auth: Auth, store_engine: AsyncEngine) -> None:
    await append_events(store_engine, 12)
    headers = auth("audit:read")
    first = (await client.get("/v1/audit/events", params={"limit": 5}, headers=headers)).json()
    assert [e["seq"] for e in first["items"]] == [1, 2, 3, 4, 5]
    assert first["next_cursor"]
    events = await _all_pages(client, headers, limit=4)
    assert [e["seq"] for e in events] == list(range(1, 13))
    assert events[0]["payload"] == {"index": 0, "table": "users"}
    too_big = await client.get("/v1/audit/events", params={"limit": 6}, headers=headers)
    assert too_big.status_code == 422
    forged = await client.get("/v1/audit/events", params={"cursor": "!!"}, headers=headers)
    assert forged.status_code == 422


async def test_verify_and_checkpoints(client: Client, auth: Auth, store_engine: AsyncEngine) -> None:
    await append_events(store_engine, 6)
    headers = auth("audit:read")
    ok = (await client.get("/v1/audit/verify", headers=headers)).json()
    assert (ok["ok"], ok["checked"], ok["broken_seq"]) == (True, 6, None)

    checkpoint = (await client.get("/v1/audit/checkpoints", headers=headers)).json()
    assert (checkpoint["seq"], checkpoint["algorithm"]) == (6, "Ed25519")
    public_key = load_pem_public_key(checkpoint["public_key"].encode())
    message = b"lethe-audit-checkpoint-v1\n" + msgspec.json.encode(
        {"head_hash": checkpoint["head_hash"], "seq": checkpoint["seq"], "time": checkpoint["time"]}
    )
    public_key.verify(base64.b64decode(checkpoint["signature"]), message)  # type: ignore[union-attr]

    params = {
        "checkpoint_seq": checkpoint["seq"],
        "checkpoint_hash": checkpoint["head_hash"],
        "checkpoint_time": checkpoint["time"],
        "checkpoint_signature": checkpoint["signature"],
    }
    assert (await client.get("/v1/audit/verify", params=params, headers=headers)).json()["ok"]

    await as_owner(store_engine, "audit_event", "DELETE FROM audit_event WHERE seq >= 5")
    cut = (await client.get("/v1/audit/verify", params=params, headers=headers)).json()
    assert (cut["ok"], cut["broken_seq"], cut["reason"]) == (False, 5, "truncated")

    forged = dict(params, checkpoint_seq=4)
    assert (await client.get("/v1/audit/verify", params=forged, headers=headers)).status_code == 422
    partial = {"checkpoint_seq": 4}
    assert (await client.get("/v1/audit/verify", params=partial, headers=headers)).status_code == 422

    await as_owner(store_engine, "audit_event", "UPDATE audit_event SET action = 'x.y' WHERE seq = 2")
    broken = (await client.get("/v1/audit/verify", headers=headers)).json()
    assert (broken["ok"], broken["broken_seq"], broken["reason"]) == (False, 2, "hash_mismatch")


async def test_checkpoint_without_signing_key(tmp_path: Path, store_url: str, auth: Auth) -> None:
    app = create_app(make_settings(tmp_path, database_url=store_url))
    async with AsyncTestClient(app=app) as unsigned:
        response = await unsigned.get("/v1/audit/checkpoints", headers=auth("audit:read"))
    assert response.status_code == 503
    assert "LETHE_AUDIT_SIGNING_KEY" in response.json()["detail"]
