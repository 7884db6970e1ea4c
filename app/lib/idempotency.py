"""``Idempotency-Key`` for POSTs that create things, scoped to the calling client.

Same key + same body -> the stored response is replayed and nothing is created again; same key +
different body -> 422; a duplicate arriving while the first is still running -> 409. The pending
record is committed on its own connection *before* the work starts (that is what lets a concurrent
duplicate see it); the stored response is written in the caller's transaction, so it commits or
rolls back with the work (:func:`run_idempotent`), or in the caller's group-commit unit
(:func:`run_idempotent_unit`), so it commits with that unit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated

import msgspec
from litestar import Response
from litestar.params import HeaderParameter
from sqlalchemy import bindparam, delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db.group_commit import Write
from app.db.models import IdempotencyRecord
from app.lib.clock import utcnow
from app.lib.errors import IdempotencyConflict, IdempotencyInProgress, ValidationFailed, field_error

__all__ = ("IdempotencyKeyHeader", "Remember", "body_fingerprint", "run_idempotent", "run_idempotent_unit")

IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description=(
            "Makes a retry safe: the same key with the same body replays the first response "
            "(`Idempotent-Replayed: true`) and creates nothing again; with another body it is a 422. "
            "1 to 255 visible ASCII characters, scoped to the calling client."
        ),
    ),
]
"""The ``Idempotency-Key`` header parameter of every creating POST."""

MAX_KEY_LENGTH = 255
STALE_AFTER = timedelta(minutes=5)
"""A pending record older than this belongs to a crashed attempt and may be taken over."""
Remember = Callable[[int, bytes, str | None], list[Write]]
"""``remember(status, encoded body, location)``: the writes storing a response (none without a key)."""
STORE_RESPONSE = (
    update(IdempotencyRecord)
    .where(
        IdempotencyRecord.client_id == bindparam("record_client_id"),
        IdempotencyRecord.key == bindparam("record_key"),
    )
    .values(
        status_code=bindparam("record_status"),
        response_body=bindparam("record_body"),
        location=bindparam("record_location"),
    )
)
"""The stored response as a group-commit write (one statement object: batched together)."""


def body_fingerprint(body: object) -> str:
    """SHA-256 of the canonical JSON of a decoded body (key order and whitespace do not matter)."""
    return hashlib.sha256(msgspec.json.encode(msgspec.to_builtins(body), order="sorted")).hexdigest()


def _replay(record: IdempotencyRecord) -> Response[bytes]:
    headers = {"Idempotent-Replayed": "true"}
    if record.location:
        headers["Location"] = record.location
    return Response(
        content=record.response_body or b"",
        status_code=record.status_code or 200,
        media_type="application/json",
        headers=headers,
    )


async def _claim(
    engine: AsyncEngine, client_id: str, key: str, operation: str, fingerprint: str
) -> IdempotencyRecord | None:
    """Commit a pending record; return the existing one if the key was used before."""
    now = utcnow()
    for _ in range(2):
        async with AsyncSession(engine, expire_on_commit=False) as session:
            session.add(
                IdempotencyRecord(
                    client_id=client_id,
                    key=key,
                    operation=operation,
                    request_hash=fingerprint,
                    created_at=now,
                )
            )
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
            else:
                return None
            existing = await session.get(IdempotencyRecord, (client_id, key))
            if existing is None:
                continue  # the other attempt was abandoned in between: try again
            if existing.status_code is None and existing.created_at < now - STALE_AFTER:
                await session.execute(
                    delete(IdempotencyRecord).where(
                        IdempotencyRecord.client_id == client_id,
                        IdempotencyRecord.key == key,
                        IdempotencyRecord.status_code.is_(None),
                    )
                )
                await session.commit()
                continue
            return existing
    raise IdempotencyInProgress(f"a request with this Idempotency-Key for '{operation}' is in progress")


async def _abandon(engine: AsyncEngine, client_id: str, key: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.client_id == client_id,
                IdempotencyRecord.key == key,
                IdempotencyRecord.status_code.is_(None),
            )
        )


async def run_idempotent(
    *,
    engine: AsyncEngine,
    session: AsyncSession,
    client_id: str,
    key: str | None,
    operation: str,
    body: object,
    produce: Callable[[], Awaitable[tuple[int, object, str | None]]],
) -> Response[bytes]:
    """Run ``produce`` at most once per (client, key).

    Args:
        engine: the store engine, used for the pending record's own short transaction.
        session: the request's session; the response is recorded in it so it commits with the work.
        client_id: the calling client (idempotency keys are scoped to it).
        key: the ``Idempotency-Key`` header, or None to run without idempotency.
        operation: a stable name of the operation, e.g. ``consents.create``.
        body: the decoded request body, fingerprinted to detect reuse with another body.
        produce: does the work in ``session`` and returns (status, body struct, location or None).
    """
    _check_key(key)
    if key is None:
        status, content, location = await produce()
        return _response(status, msgspec.json.encode(content), location)
    replay = await _claim_or_replay(engine, client_id, key, operation, body)
    if replay is not None:
        return replay
    try:
        status, content, location = await produce()
        encoded = msgspec.json.encode(content)
        await session.execute(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.client_id == client_id,
                IdempotencyRecord.key == key,
            )
            .values(status_code=status, response_body=encoded, location=location)
        )
    except BaseException:
        await _abandon(engine, client_id, key)
        raise
    return _response(status, encoded, location)


def _check_key(key: str | None) -> None:
    if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
        raise ValidationFailed(
            "Idempotency-Key must be 1 to 255 characters",
            [field_error("header.Idempotency-Key", "1 to 255 characters")],
        )


async def _claim_or_replay(
    engine: AsyncEngine, client_id: str, key: str, operation: str, body: object
) -> Response[bytes] | None:
    """Claim the key (None: go ahead), or the first response to replay; 422/409 on misuse."""
    fingerprint = body_fingerprint(body)
    existing = await _claim(engine, client_id, key, operation, fingerprint)
    if existing is None:
        return None
    if existing.request_hash != fingerprint or existing.operation != operation:
        raise IdempotencyConflict("this Idempotency-Key was already used with a different request body")
    if existing.status_code is None:
        raise IdempotencyInProgress("a request with this Idempotency-Key is still in progress")
    return _replay(existing)


async def run_idempotent_unit(
    *,
    engine: AsyncEngine,
    client_id: str,
    key: str | None,
    operation: str,
    body: object,
    produce: Callable[[Remember], Awaitable[tuple[int, bytes, str | None]]],
) -> Response[bytes]:
    """Like :func:`run_idempotent`, for work written as one group-commit unit.

    ``produce`` gets ``remember(status, encoded body, location)``, which returns the writes that
    store the response (none without a key); it adds them to its unit, submits it, and returns
    (status, encoded body, location) once the unit is committed.
    """
    _check_key(key)

    def forget(_status: int, _encoded: bytes, _location: str | None) -> list[Write]:
        return []

    if key is None:
        return _response(*await produce(forget))
    replay = await _claim_or_replay(engine, client_id, key, operation, body)
    if replay is not None:
        return replay

    def remember(status: int, encoded: bytes, location: str | None) -> list[Write]:
        row = {
            "record_client_id": client_id,
            "record_key": key,
            "record_status": status,
            "record_body": encoded,
            "record_location": location,
        }
        return [Write(STORE_RESPONSE, row)]

    try:
        return _response(*await produce(remember))
    except BaseException:
        await _abandon(engine, client_id, key)
        raise


def _response(status: int, encoded: bytes, location: str | None) -> Response[bytes]:
    headers = {"Location": location} if location else None
    return Response(content=encoded, status_code=status, media_type="application/json", headers=headers)
