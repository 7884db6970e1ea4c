"""The audit service: chained appends inside the caller's transaction, verification, checkpoints.

Every later feature records what it did with :func:`append`, in the same session as the work, so
the action and its audit event commit or roll back together.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, Select, distinct, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.audit import AuditEvent, ErasureTombstone
from app.db.requests import SubjectRequest, SubjectRequestSystem
from app.engine.subjects import subject_key_reference
from app.lib.crypto import CHAIN_OPTION, ChainKeyring, hmac_ref
from app.lib.errors import Unavailable, ValidationFailed
from app.manifest.model import IdentityMatch, default_match, normalise_identity

__all__ = (
    "ADVISORY_LOCK_KEY",
    "CHAIN_KEYED_ACTION",
    "GENESIS_HASH",
    "IDENTIFIER",
    "LEGACY_EPOCH",
    "EventFilter",
    "add_tombstone",
    "append",
    "canonical_time",
    "chain_keyring",
    "event_hash",
    "hash_of",
    "head",
    "list_events",
    "requests_of_subject",
    "subject_reference",
    "subject_references_for",
    "tombstone_reference",
    "tombstones_since",
    "validate_payload",
)

ADVISORY_LOCK_KEY = 0x4C455448_41554454  # "LETH" "AUDT": serialises appends on PostgreSQL
GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first event."""
IDENTIFIER = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
"""What a payload string may look like: a table, column, system, purpose or request id."""
MAX_PAYLOAD_DEPTH = 4
EVENT_DOMAIN = b"lethe-audit-event-v1\n"
KEYED_EVENT_DOMAIN = b"lethe-audit-event-v2\n"
LEGACY_EPOCH = 0
"""Links written before the chain was keyed: plain SHA-256, accepted only before the first keyed one."""
CHAIN_KEYED_ACTION = "audit.chain_keyed"
"""The event that starts a key epoch (first keyed event, or a rotation): it anchors what came before."""
CHAIN_KEY_VARIABLE = "LETHE_AUDIT_CHAIN_KEY"
AUDIT_KEY_VARIABLE = "LETHE_AUDIT_KEY"

Payload = Mapping[str, Any]


# --- pseudonymous references ---------------------------------------------------------------


def subject_reference(
    audit_key: str, system: str | None, identity_type: str, value: str, match: IdentityMatch | None = None
) -> str:
    """HMAC-SHA256 (under the audit key) of system, identity type and normalised identity.

    The identity is normalised by ``match``, the rule the manifests compare it by (omitted: the
    default rule of the identity's name, case-folded for e-mail-like identities, trimmed
    otherwise), so two values that find the same subject always give the same reference.
    ``system`` is None for events that concern the subject across systems (a request as a
    whole, a consent); it is hashed as the empty string. Nobody without the key can reverse a
    reference or test a guess.
    """
    identity_type = identity_type.strip().casefold()
    rule = match or default_match(identity_type)
    return hmac_ref(audit_key, system or "", identity_type, normalise_identity(rule, value))


def tombstone_reference(audit_key: str, system: str, key_value: object) -> str:
    """The ``subject_key_ref`` of an erasure tombstone: HMAC of the subject's key in ``system``."""
    return subject_key_reference(audit_key, system, (key_value,))


async def add_tombstone(
    session: AsyncSession,
    audit_key: str,
    *,
    system: str,
    key_value: object,
    request_id: str | None,
    erased_at: datetime | None = None,
) -> ErasureTombstone:
    """Record, in the caller's transaction, that a subject of ``system`` was erased.

    Only the HMAC of the subject's key is kept, so a restored backup can be cleaned again
    (replay) without Lethe holding the identifier.
    """
    tombstone = ErasureTombstone(
        id=uuid.uuid4(),
        system=system,
        subject_key_ref=tombstone_reference(audit_key, system, key_value),
        erased_at=erased_at or datetime.now(UTC),
        request_id=request_id,
    )
    session.add(tombstone)
    await session.flush()
    return tombstone


async def tombstones_since(
    session: AsyncSession, since: datetime | None = None, system: str | None = None
) -> list[ErasureTombstone]:
    """Tombstones erased at or after ``since`` (all when None), oldest first."""
    query = select(ErasureTombstone).order_by(ErasureTombstone.erased_at, ErasureTombstone.id)
    if since is not None:
        query = query.where(ErasureTombstone.erased_at >= since)
    if system is not None:
        query = query.where(ErasureTombstone.system == system)
    return list((await session.scalars(query)).all())


def _audit_key(settings: Settings) -> str:
    if not settings.audit_key:
        raise Unavailable(f"{AUDIT_KEY_VARIABLE} is not configured")
    return settings.audit_key


async def subject_references_for(
    session: AsyncSession,
    settings: Settings,
    identity_type: str,
    value: str,
    system: str | None = None,
) -> list[str]:
    """Every reference an identity may have in the log: per system seen, and cross-system.

    Lookups by identity compute references; with ``system`` given only that system's.
    """
    key = _audit_key(settings)
    if system is not None:
        return [subject_reference(key, system, identity_type, value)]
    systems = (await session.scalars(select(distinct(AuditEvent.system)))).all()
    names = {s for s in systems if s} | {""}
    return sorted(subject_reference(key, name or None, identity_type, value) for name in names)


# --- payload validation and canonical encoding ----------------------------------------------


def _check_value(value: object, path: str, depth: int) -> None:
    if isinstance(value, bool | int):
        return
    if isinstance(value, str):
        if not IDENTIFIER.fullmatch(value):
            raise _payload_error(path, "strings must be identifiers ([A-Za-z0-9_.:-], 1-128)")
        return
    if depth >= MAX_PAYLOAD_DEPTH:
        raise _payload_error(path, f"nested deeper than {MAX_PAYLOAD_DEPTH}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not IDENTIFIER.fullmatch(key):
                raise _payload_error(path, "keys must be identifiers")
            _check_value(item, f"{path}.{key}", depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_value(item, f"{path}[{index}]", depth + 1)
        return
    raise _payload_error(path, f"{type(value).__name__} is not allowed (counts, booleans, identifiers)")


def _payload_error(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"audit payload refused at {path}: {message}", [{"field": path, "message": message}]
    )


def validate_payload(payload: Payload) -> dict[str, Any]:
    """Refuse anything but ints, booleans and identifier-like strings (nested dicts/lists ok).

    An e-mail address, a name or free text cannot match :data:`IDENTIFIER` (no ``@``, no
    spaces), so personal data cannot enter the log through a payload.
    """
    _check_value(payload, "payload", 0)
    return msgspec.to_builtins(payload)  # type: ignore[no-any-return]


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
    payload: Payload,
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


def hash_of(event: AuditEvent, keyring: ChainKeyring) -> str | None:
    """The link ``event`` should carry (None when its epoch's key is not in ``keyring``)."""
    return event_hash(
        seq=event.seq,
        occurred_at=event.occurred_at,
        actor=event.actor,
        action=event.action,
        request_id=event.request_id,
        system=event.system,
        subject_ref=event.subject_ref,
        payload=event.payload,
        prev_hash=event.prev_hash,
        epoch=event.epoch,
        keyring=keyring,
    )


async def chain_keyring(session: AsyncSession) -> ChainKeyring:
    """The chain keys carried by the store engine (see :func:`app.db.store.create_store_engine`).

    Raises:
        Unavailable: the engine was built without a chain key.
    """
    connection = (await session.connection()).sync_connection
    keyring = connection.get_execution_options().get(CHAIN_OPTION) if connection is not None else None
    if not isinstance(keyring, ChainKeyring) or keyring.epoch not in keyring.keys:
        raise Unavailable(f"{CHAIN_KEY_VARIABLE} is not configured")
    return keyring


# --- appends --------------------------------------------------------------------------------


def _check_identifier(name: str, value: str | None) -> None:
    if value is not None and not IDENTIFIER.fullmatch(value):
        raise ValidationFailed(
            f"audit {name} must be an identifier",
            [{"field": name, "message": "must match [A-Za-z0-9_.:-]{1,128}"}],
        )


async def _take_append_lock(session: AsyncSession) -> None:
    """Serialise appends until the caller's transaction ends.

    PostgreSQL: a transaction-level advisory lock. SQLite: a no-op write takes the database's
    single write lock now, before the head is read (a deferred transaction would otherwise read
    a head another writer is about to move, then fail to upgrade its lock).
    """
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    else:
        await session.execute(update(AuditEvent).where(AuditEvent.seq < 0).values(seq=AuditEvent.seq))


async def head(session: AsyncSession) -> tuple[int, str]:
    """``(seq, hash)`` of the newest event, ``(0, GENESIS_HASH)`` on an empty chain."""
    seq, head_hash, _ = await _head_with_epoch(session)
    return seq, head_hash


async def _head_with_epoch(session: AsyncSession) -> tuple[int, str, int | None]:
    row = (
        await session.execute(
            select(AuditEvent.seq, AuditEvent.hash, AuditEvent.epoch).order_by(AuditEvent.seq.desc()).limit(1)
        )
    ).first()
    return (0, GENESIS_HASH, None) if row is None else (int(row[0]), str(row[1]), int(row[2]))


async def append(
    session: AsyncSession,
    *,
    action: str,
    actor: str,
    request_id: str | None = None,
    system: str | None = None,
    subject_ref: str | None = None,
    payload: Payload | None = None,
) -> AuditEvent:
    """Append one event to the chain inside the caller's transaction; it commits with the work.

    Args:
        session: the caller's session; nothing is committed here.
        action: what happened, dotted (``request.received``, ``consent.granted``).
        actor: who did it (the token's ``sub``, or ``system:worker``).
        request_id: the data-subject request concerned, if any.
        system: the target system concerned, if any.
        subject_ref: a pseudonymous reference from :func:`subject_reference`, never an identity.
        payload: counts, booleans and identifiers only (see :func:`validate_payload`).

    Returns:
        The flushed event, with its ``seq`` and ``hash``.
    """
    _check_identifier("action", action)
    _check_identifier("request_id", request_id)
    _check_identifier("system", system)
    if subject_ref is not None and not re.fullmatch(r"[0-9a-f]{64}", subject_ref):
        raise ValidationFailed(
            "audit subject_ref must be a reference from subject_reference()",
            [{"field": "subject_ref", "message": "64 lowercase hex"}],
        )
    body = validate_payload(payload or {})
    keyring = await chain_keyring(session)
    await _take_append_lock(session)
    head_seq, head_hash, head_epoch = await _head_with_epoch(session)
    if head_epoch is not None and head_epoch < keyring.epoch:
        # The first event under a newer key anchors the history written under older ones (or
        # none). Replicas still on the previous epoch during a rolling update keep appending
        # under their key, which verification also holds.
        anchor = {"from_epoch": head_epoch, "to_epoch": keyring.epoch, "anchored_seq": head_seq}
        event = _linked_event(keyring, head_seq + 1, head_hash, CHAIN_KEYED_ACTION, "system:audit", anchor)
        session.add(event)
        head_seq, head_hash = event.seq, event.hash
    event = _linked_event(
        keyring,
        head_seq + 1,
        head_hash,
        action,
        actor,
        body,
        request_id=request_id,
        system=system,
        subject_ref=subject_ref,
    )
    session.add(event)
    await session.flush()
    return event


def _linked_event(
    keyring: ChainKeyring,
    seq: int,
    prev_hash: str,
    action: str,
    actor: str,
    payload: dict[str, Any],
    *,
    request_id: str | None = None,
    system: str | None = None,
    subject_ref: str | None = None,
) -> AuditEvent:
    occurred_at = datetime.now(UTC)
    digest = event_hash(
        seq=seq,
        occurred_at=occurred_at,
        actor=actor,
        action=action,
        request_id=request_id,
        system=system,
        subject_ref=subject_ref,
        payload=payload,
        prev_hash=prev_hash,
        epoch=keyring.epoch,
        keyring=keyring,
    )
    assert digest is not None  # noqa: S101 - chain_keyring() checked the current epoch's key
    return AuditEvent(
        seq=seq,
        occurred_at=occurred_at,
        actor=actor,
        action=action,
        request_id=request_id,
        system=system,
        subject_ref=subject_ref,
        payload=payload,
        prev_hash=prev_hash,
        hash=digest,
        epoch=keyring.epoch,
    )


# --- queries --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EventFilter:
    """Filters of ``GET /v1/audit/events``; ``subject_refs`` is computed from an identity."""

    action: str | None = None
    request_id: str | None = None
    system: str | None = None
    subject_refs: Sequence[str] | None = None
    subject_request_ids: Sequence[str] = ()
    """Requests about the same subject found through its key references (matched with
    ``subject_refs``: an event matches either)."""
    since: datetime | None = None
    until: datetime | None = None


def _filtered(query: Select[tuple[AuditEvent]], flt: EventFilter) -> Select[tuple[AuditEvent]]:
    if flt.action is not None:
        query = query.where(AuditEvent.action == flt.action)
    if flt.request_id is not None:
        query = query.where(AuditEvent.request_id == flt.request_id)
    if flt.system is not None:
        query = query.where(AuditEvent.system == flt.system)
    if flt.subject_refs is not None:
        by_ref: ColumnElement[bool] = AuditEvent.subject_ref.in_(list(flt.subject_refs))
        if flt.subject_request_ids:
            by_ref = or_(by_ref, AuditEvent.request_id.in_(list(flt.subject_request_ids)))
        query = query.where(by_ref)
    if flt.since is not None:
        query = query.where(AuditEvent.occurred_at >= flt.since)
    if flt.until is not None:
        query = query.where(AuditEvent.occurred_at < flt.until)
    return query


async def requests_of_subject(session: AsyncSession, refs: Sequence[str]) -> list[str]:
    """Every request about the subject whose identity references are ``refs``: the requests made
    with those identities, then every request that resolved to the same subject key in a system
    (``subject_key_ref``), whatever identity it was made with."""
    direct = select(SubjectRequest.id).where(SubjectRequest.subject_ref.in_(list(refs)))
    key_refs = (
        await session.scalars(
            select(SubjectRequestSystem.subject_key_ref).where(
                SubjectRequestSystem.request_id.in_(direct), SubjectRequestSystem.subject_key_ref.is_not(None)
            )
        )
    ).all()
    related = select(SubjectRequestSystem.request_id).where(
        SubjectRequestSystem.subject_key_ref.in_(sorted({r for r in key_refs if r}))
    )
    ids = (
        await session.scalars(
            select(SubjectRequest.id).where(
                or_(SubjectRequest.id.in_(direct), SubjectRequest.id.in_(related))
            )
        )
    ).all()
    return sorted(str(i) for i in ids)


async def list_events(
    session: AsyncSession, flt: EventFilter, *, after_seq: int | None, limit: int
) -> tuple[list[AuditEvent], int | None]:
    """One page of events in ``seq`` order, and the ``seq`` to continue after (None at the end)."""
    query = _filtered(select(AuditEvent), flt).order_by(AuditEvent.seq).limit(limit + 1)
    if after_seq is not None:
        query = query.where(AuditEvent.seq > after_seq)
    events = list((await session.scalars(query)).all())
    if len(events) > limit:
        return events[:limit], events[limit - 1].seq
    return events, None
