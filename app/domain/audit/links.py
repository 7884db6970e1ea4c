"""The links of the audit chain: canonical encoding, keyed hashes, the keyring of the store engine."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from app.lib.crypto import CHAIN_OPTION, ChainKeyring
from app.lib.errors import Unavailable

__all__ = (
    "CHAIN_KEYED_ACTION",
    "CONTENT_FIELDS",
    "GENESIS_HASH",
    "LEGACY_EPOCH",
    "canonical_time",
    "chain_keyring",
    "engine_keyring",
    "event_hash",
    "hash_of",
)

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first event."""
EVENT_DOMAIN = b"lethe-audit-event-v1\n"
KEYED_EVENT_DOMAIN = b"lethe-audit-event-v2\n"
LEGACY_EPOCH = 0
"""Links written before the chain was keyed: plain SHA-256, accepted only before the first keyed one."""
CHAIN_KEYED_ACTION = "audit.chain_keyed"
"""The event that starts a key epoch (first keyed event, or a rotation): it anchors what came before."""
CHAIN_KEY_VARIABLE = "LETHE_AUDIT_CHAIN_KEY"

CONTENT_FIELDS = ("occurred_at", "actor", "action", "request_id", "system", "subject_ref", "payload")
"""What a writer records about an event; the link covers these between ``seq`` and ``prev_hash``."""


def canonical_time(moment: datetime) -> str:
    """UTC with microseconds, always the same width: ``2026-11-22T01:02:03.000004Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(
    *,
    seq: int,
    occurred_at: datetime,
    actor: str,
    action: str,
    request_id: str | None,
    system: str | None,
    subject_ref: str | None,
    payload: Mapping[str, Any],
    prev_hash: str,
    epoch: int = LEGACY_EPOCH,
    keyring: ChainKeyring | None = None,
) -> str | None:
    """The link of an event over its canonical encoding (fixed field order, sorted payload keys).

    Epoch 0 (events from before the chain was keyed) is plain SHA-256; any other epoch is an
    HMAC-SHA256 under that epoch's chain key, None when the keyring lacks it.
    """
    fields: list[Any] = [
        seq,
        canonical_time(occurred_at),
        actor,
        action,
        request_id,
        system,
        subject_ref,
        payload,
        prev_hash,
    ]
    if epoch == LEGACY_EPOCH:
        encoded = msgspec.json.encode(fields, order="sorted")
        return hashlib.sha256(EVENT_DOMAIN + encoded).hexdigest()
    if keyring is None:
        return None
    encoded = msgspec.json.encode([*fields, epoch], order="sorted")
    return keyring.link(epoch, KEYED_EVENT_DOMAIN + encoded)


def hash_of(event: Any, keyring: ChainKeyring) -> str | None:
    """The link ``event`` (an ``AuditEvent`` or alike) should carry; None without its epoch's key."""
    content = {name: getattr(event, name) for name in CONTENT_FIELDS}
    return event_hash(seq=event.seq, prev_hash=event.prev_hash, epoch=event.epoch, keyring=keyring, **content)


def engine_keyring(options: Mapping[str, Any]) -> ChainKeyring:
    """The chain keyring among a store engine's execution options.

    Raises:
        Unavailable: the engine was built without a chain key.
    """
    keyring = options.get(CHAIN_OPTION)
    if not isinstance(keyring, ChainKeyring) or keyring.epoch not in keyring.keys:
        raise Unavailable(f"{CHAIN_KEY_VARIABLE} is not configured")
    return keyring


async def chain_keyring(session: AsyncSession) -> ChainKeyring:
    """The chain keys carried by the store engine (see :func:`app.db.store.create_store_engine`).

    Raises:
        Unavailable: the engine was built without a chain key.
    """
    connection = (await session.connection()).sync_connection
    return engine_keyring(connection.get_execution_options() if connection is not None else {})
