"""Pseudonymous references to subjects (HMAC under the audit key) and erasure tombstones."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import distinct, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.audit import AuditEvent, ErasureTombstone
from app.engine.subjects import subject_key_reference
from app.lib.clock import utcnow
from app.lib.crypto import hmac_ref
from app.lib.errors import Unavailable
from app.manifest.model import IdentityMatch, default_match, normalise_identity

__all__ = (
    "add_tombstone",
    "subject_reference",
    "subject_references_for",
    "tombstone_reference",
    "tombstones_since",
)

AUDIT_KEY_VARIABLE = "LETHE_AUDIT_KEY"


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
        erased_at=erased_at or utcnow(),
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
