"""``Idempotency-Key`` for POSTs that create things, scoped to the calling client.

Same key + same body -> the stored response is replayed and nothing is created again; same key +
different body -> 422. The record is claimed by an INSERT as the first statement of the caller's
transaction and its response written at the end of it, so claim, work and response commit or roll
back together: a concurrent duplicate's INSERT waits on the key until the first commits (PostgreSQL
and MariaDB lock the key, SQLite serialises writers), then fails and the duplicate replays the first
response; if the first rolled back, the duplicate does the work. A pending record committed without
a response (written by an earlier version, which committed the claim on its own connection first)
answers 409 while it is fresh and is taken over once stale.

Work that is a unit of the group committer (a consent and its audit event) goes through
:func:`run_idempotent_unit`: the record joins the unit with its response already in it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, cast

import msgspec
from litestar import Response
from litestar.params import HeaderParameter
from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.group_commit import GroupCommitter, Write
from app.db.models import IdempotencyRecord
from app.lib.clock import utcnow
from app.lib.errors import IdempotencyConflict, IdempotencyInProgress, ValidationFailed, field_error

__all__ = ("IdempotencyKeyHeader", "body_fingerprint", "run_idempotent", "run_idempotent_unit")

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
RECORDS = cast("Table", IdempotencyRecord.__table__)
INSERT_RECORD = insert(RECORDS)
"""Built once: the group committer batches the writes of one statement object together."""
_KEY_IS = (RECORDS.c.client_id == bindparam("w_client")) & (RECORDS.c.key == bindparam("w_key"))
_RECORD = select(RECORDS).where(_KEY_IS)
_ANSWER = update(RECORDS).where(_KEY_IS)
"""Built once (SQL compiled once per process); the SET columns come with each call's values."""


def body_fingerprint(body: object) -> str:
    """SHA-256 of the canonical JSON of a decoded body (key order and whitespace do not matter)."""
    return hashlib.sha256(msgspec.json.encode(msgspec.to_builtins(body), order="sorted")).hexdigest()


def _replay(record: Row[Any]) -> Response[bytes]:
    headers = {"Idempotent-Replayed": "true"}
    if record.location:
        headers["Location"] = record.location
    return Response(
        content=record.response_body or b"",
        status_code=record.status_code or 200,
        media_type="application/json",
        headers=headers,
    )


def _claimed(client_id: str, key: str, operation: str, fingerprint: str, now: datetime) -> dict[str, Any]:
    """The values of a new record of ``key`` (no response yet)."""
    return {
        "client_id": client_id,
        "key": key,
        "operation": operation,
        "request_hash": fingerprint,
        "created_at": now,
    }


async def _record(session: AsyncSession, client_id: str, key: str) -> Row[Any] | None:
    """The record of ``key`` for ``client_id``, if the key was used."""
    return (await session.execute(_RECORD, {"w_client": client_id, "w_key": key})).first()


async def _claim(
    session: AsyncSession, client_id: str, key: str, operation: str, fingerprint: str
) -> Row[Any] | None:
    """Insert the pending record in the session's (new) transaction; return the existing record
    instead if the key was used before (the transaction is then rolled back: nothing was done)."""
    if session.in_transaction():
        msg = "the idempotency claim must be the first statement of the transaction"
        raise RuntimeError(msg)
    now = utcnow()
    for _ in range(2):
        try:
            await session.execute(INSERT_RECORD, _claimed(client_id, key, operation, fingerprint, now))
        except IntegrityError:
            await session.rollback()
        else:
            return None
        existing = await _record(session, client_id, key)
        if existing is None:
            await session.rollback()
            continue  # the other attempt rolled back in between: try again
        if existing.status_code is None and existing.created_at < now - STALE_AFTER:
            await session.execute(
                delete(RECORDS).where(
                    RECORDS.c.client_id == client_id, RECORDS.c.key == key, RECORDS.c.status_code.is_(None)
                )
            )
            await session.commit()
            continue
        await session.rollback()
        return existing
    raise IdempotencyInProgress(f"a request with this Idempotency-Key for '{operation}' is in progress")


def _check_key(key: str | None) -> None:
    if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
        raise ValidationFailed(
            "Idempotency-Key must be 1 to 255 characters",
            [field_error("header.Idempotency-Key", "1 to 255 characters")],
        )


async def run_idempotent(
    *,
    session: AsyncSession,
    client_id: str,
    key: str | None,
    operation: str,
    body: object,
    produce: Callable[[], Awaitable[tuple[int, object, str | None]]],
) -> Response[bytes]:
    """Run ``produce`` at most once per (client, key).

    Args:
        session: the request's session, with no statement run yet: claim, work and response
            commit or roll back together in its transaction.
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
    fingerprint = body_fingerprint(body)
    existing = await _claim(session, client_id, key, operation, fingerprint)
    if existing is not None:
        return _answered(existing, operation, fingerprint)
    status, content, location = await produce()
    encoded = msgspec.json.encode(content)
    await session.execute(
        _ANSWER,
        {
            "w_client": client_id,
            "w_key": key,
            "status_code": status,
            "response_body": encoded,
            "location": location,
        },
    )
    return _response(status, encoded, location)


def _answered(existing: Row[Any], operation: str, fingerprint: str) -> Response[bytes]:
    """The answer to a key used before: its stored response, or why there is none to give."""
    if existing.request_hash != fingerprint or existing.operation != operation:
        raise IdempotencyConflict("this Idempotency-Key was already used with a different request body")
    if existing.status_code is None:
        raise IdempotencyInProgress("a request with this Idempotency-Key is still in progress")
    return _replay(existing)


async def run_idempotent_unit(
    *,
    session: AsyncSession,
    committer: GroupCommitter,
    client_id: str,
    key: str | None,
    operation: str,
    body: object,
    prepare: Callable[[], tuple[Sequence[Write], int, object]],
) -> Response[bytes]:
    """:func:`run_idempotent` for work that is one unit of the group committer.

    ``prepare`` builds the unit's rows and the response they answer with, writing nothing. With a
    key, the record, already holding that response, joins the unit: claim, work and response
    commit together in one commit shared with the other callers waiting. A key used before makes
    the unit fail on the record's primary key (the committer writes a refused batch again one unit
    at a time, so only this caller's unit fails); the stored response is then replayed, or the
    conflict reported, exactly as :func:`run_idempotent` does.

    Args:
        session: the request's session, used only to read the record of a key used before.
    """
    _check_key(key)
    writes, status, content = prepare()
    encoded = msgspec.json.encode(content)
    if key is None:
        await committer.submit(writes)
        return _response(status, encoded, None)
    fingerprint = body_fingerprint(body)
    answered = {"status_code": status, "response_body": encoded, "location": None}
    record = Write(INSERT_RECORD, {**_claimed(client_id, key, operation, fingerprint, utcnow()), **answered})
    try:
        await committer.submit([record, *writes])
    except IntegrityError:
        existing = await _record(session, client_id, key)
        if existing is None:  # refused for another reason than the key
            raise
        return _answered(existing, operation, fingerprint)
    return _response(status, encoded, None)


def _response(status: int, encoded: bytes, location: str | None) -> Response[bytes]:
    headers = {"Location": location} if location else None
    return Response(content=encoded, status_code=status, media_type="application/json", headers=headers)
