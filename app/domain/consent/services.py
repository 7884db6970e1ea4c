"""Recording consent events (mirrored into the audit chain) and deriving status and history.

A consent and its audit event are one unit of the process's group committer
(:mod:`app.db.group_commit`): they commit together, in one transaction shared with other
callers' consents, and :func:`record_consent` returns once they are durable.

Other services (the access export) call :func:`consent_history` with the subject's reference
from :func:`consent_subject_reference`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Table, and_, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.audit import ConsentEvent
from app.db.group_commit import GroupCommitter, Write
from app.domain.audit import services as audit
from app.domain.audit.references import subject_reference
from app.lib.clock import utcnow
from app.lib.errors import Unavailable, ValidationFailed, field_error

__all__ = (
    "ConsentStatus",
    "ConsentUnit",
    "NewConsent",
    "consent_history",
    "consent_history_page",
    "consent_status",
    "consent_subject_reference",
    "consent_unit",
    "record_consent",
)


def consent_subject_reference(settings: Settings, identity_type: str, value: str) -> str:
    """The ledger's reference of an identity: system-independent (a consent is per person)."""
    if not settings.audit_key:
        raise Unavailable("LETHE_AUDIT_KEY is not configured")
    return subject_reference(settings.audit_key, None, identity_type, value)


INSERT_CONSENT = insert(cast("Table", ConsentEvent.__table__))
"""Built once: the group committer batches the consents of one commit into one executemany."""
CONSENT_COLUMNS = tuple(column.key for column in cast("Table", ConsentEvent.__table__).columns)

FUTURE_SKEW = timedelta(minutes=5)
"""How far ahead of the service's clock a consent's ``occurred_at`` may be (clock skew)."""


@dataclass(frozen=True, kw_only=True)
class NewConsent:
    """What a caller states about one grant or withdrawal."""

    subject_ref: str
    purpose: str
    granted: bool
    policy_version: str
    text_hash: str
    source: str
    occurred_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class ConsentUnit:
    """A consent ready to write: the event, its audit event's id, and the rows of both."""

    event: ConsentEvent
    """Not attached to a session: the rows are written by the group committer."""
    audit_event_id: uuid.UUID
    writes: list[Write]


def consent_unit(consent: NewConsent, *, actor: str) -> ConsentUnit:
    """Check a consent and build its rows: the consent event and the audit event that mirrors it.

    Raises:
        ValidationFailed: ``occurred_at`` is too far in the future.
    """
    now = utcnow()
    if consent.occurred_at is not None and consent.occurred_at.astimezone(UTC) > now + FUTURE_SKEW:
        raise ValidationFailed(
            "occurred_at is in the future",
            [field_error("body.occurred_at", f"at most {FUTURE_SKEW.seconds // 60} minutes ahead of now")],
        )
    event = ConsentEvent(
        id=uuid.uuid4(),
        subject_ref=consent.subject_ref,
        purpose=consent.purpose,
        granted=consent.granted,
        policy_version=consent.policy_version,
        text_hash=consent.text_hash,
        source=consent.source,
        occurred_at=(consent.occurred_at or now).astimezone(UTC),
        recorded_at=now,
        actor=actor,
    )
    audit_event_id, audit_write = audit.pending_write(
        action="consent.granted" if consent.granted else "consent.withdrawn",
        actor=actor,
        subject_ref=consent.subject_ref,
        payload={
            "consent_event_id": str(event.id),
            "purpose": consent.purpose,
            "granted": consent.granted,
            "policy_version": consent.policy_version,
            "text_hash": consent.text_hash,
            "source": consent.source,
        },
    )
    row = {name: getattr(event, name) for name in CONSENT_COLUMNS}
    writes = [Write(INSERT_CONSENT, row), audit_write]
    return ConsentUnit(event=event, audit_event_id=audit_event_id, writes=writes)


async def record_consent(
    committer: GroupCommitter, consent: NewConsent, *, actor: str
) -> tuple[ConsentEvent, uuid.UUID]:
    """Write one immutable consent event and its audit event atomically; return once committed.

    Returns:
        The event and the id of the audit event that mirrors it (linked by the sequencer
        shortly after the commit; ``event_id`` in the audit log).
    """
    unit = consent_unit(consent, actor=actor)
    await committer.submit(unit.writes)
    return unit.event, unit.audit_event_id


@dataclass(frozen=True, kw_only=True)
class ConsentStatus:
    """Derived status of one purpose at one instant."""

    granted: bool
    status: str
    decided_by: ConsentEvent | None


async def consent_status(
    session: AsyncSession, subject_ref: str, purpose: str, as_of: datetime | None = None
) -> ConsentStatus:
    """The newest event at or before ``as_of`` decides; at the same instant, withdrawal wins."""
    moment = as_of or utcnow()
    event = (
        await session.scalars(
            select(ConsentEvent)
            .where(
                ConsentEvent.subject_ref == subject_ref,
                ConsentEvent.purpose == purpose,
                ConsentEvent.occurred_at <= moment,
            )
            .order_by(ConsentEvent.occurred_at.desc(), ConsentEvent.granted.asc())
            .limit(1)
        )
    ).first()
    if event is None:
        return ConsentStatus(granted=False, status="unknown", decided_by=None)
    return ConsentStatus(
        granted=event.granted, status="granted" if event.granted else "withdrawn", decided_by=event
    )


async def consent_history_page(
    session: AsyncSession,
    subject_ref: str,
    *,
    purpose: str | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int,
) -> tuple[list[ConsentEvent], tuple[datetime, uuid.UUID] | None]:
    """One page of a subject's events, oldest first, and the key to continue after."""
    query = select(ConsentEvent).where(ConsentEvent.subject_ref == subject_ref)
    if purpose is not None:
        query = query.where(ConsentEvent.purpose == purpose)
    if after is not None:
        query = query.where(
            or_(
                ConsentEvent.occurred_at > after[0],
                and_(ConsentEvent.occurred_at == after[0], ConsentEvent.id > after[1]),
            )
        )
    query = query.order_by(ConsentEvent.occurred_at, ConsentEvent.id).limit(limit + 1)
    events = list((await session.scalars(query)).all())
    if len(events) > limit:
        last = events[limit - 1]
        return events[:limit], (last.occurred_at, last.id)
    return events, None


async def consent_history(session: AsyncSession, subject_ref: str) -> list[ConsentEvent]:
    """Every consent event of a subject, oldest first (for the Art. 15 access export)."""
    return list(
        (
            await session.scalars(
                select(ConsentEvent)
                .where(ConsentEvent.subject_ref == subject_ref)
                .order_by(ConsentEvent.occurred_at, ConsentEvent.id)
            )
        ).all()
    )
