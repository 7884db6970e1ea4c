"""Audit appends: every feature records what it did with :func:`append`, in its own transaction.

An append queues the event (``audit_pending``) in the caller's session, so the action and its
event commit or roll back together, and takes no lock: the sequencer
(:mod:`app.domain.audit.sequencer`) assigns ``seq`` and links committed events into the chain in
batches, shortly after they commit. A write that need not share its caller's transaction (a
consent and its event) goes through the process's group committer instead
(:mod:`app.db.group_commit`), its event row given by :func:`pending_write`: many callers, one
commit.
"""

from __future__ import annotations

import uuid
from typing import Required, TypedDict, Unpack, cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.audit import AuditPending
from app.db.group_commit import Write
from app.domain.audit.payloads import Payload, check_event_fields, validate_payload
from app.domain.audit.sequencer import wake_on_commit
from app.lib.clock import utcnow

__all__ = ("EventFields", "append", "append_all", "pending_write")

PENDING = cast("Table", AuditPending.__table__)
"""A Core insert into the table: no ORM bookkeeping on the hottest write path."""
INSERT_PENDING = insert(PENDING)
"""Built once: the group committer batches the writes of one statement object together."""


class EventFields(TypedDict, total=False):
    """What an event states (the keyword arguments of :func:`append` and :func:`pending_write`)."""

    action: Required[str]
    """What happened, dotted (``request.received``, ``consent.granted``)."""
    actor: Required[str]
    """Who did it (the token's ``sub``, or ``system:worker``)."""
    request_id: str | None
    """The data-subject request concerned, if any."""
    system: str | None
    """The target system concerned, if any."""
    subject_ref: str | None
    """A pseudonymous reference from :func:`app.domain.audit.references.subject_reference`,
    never an identity."""
    payload: Payload | None
    """Counts, booleans and identifiers only (see :func:`app.domain.audit.payloads.validate_payload`)."""


def pending_write(**event: Unpack[EventFields]) -> tuple[uuid.UUID, Write]:
    """One event's ``audit_pending`` row, checked as :func:`append` checks it, for a group-commit unit.

    Returns:
        The event's id and the write; the event exists once the unit holding it commits.
    """
    request_id, system, subject_ref = event.get("request_id"), event.get("system"), event.get("subject_ref")
    check_event_fields(action=event["action"], request_id=request_id, system=system, subject_ref=subject_ref)
    event_id = uuid.uuid4()
    row = {
        "event_id": event_id,
        "occurred_at": utcnow(),
        "actor": event["actor"],
        "action": event["action"],
        "request_id": request_id,
        "system": system,
        "subject_ref": subject_ref,
        "payload": validate_payload(event.get("payload") or {}),
    }
    return event_id, Write(INSERT_PENDING, row)


async def append(session: AsyncSession, **event: Unpack[EventFields]) -> uuid.UUID:
    """Queue one event inside the caller's transaction; it is linked once that commits.

    Args:
        session: the caller's session; nothing is committed here.
        **event: ``action`` and ``actor``, optionally ``request_id``, ``system``, ``subject_ref``
            and ``payload`` (see :class:`EventFields`).

    Returns:
        The event's id (``event_id`` of the linked event, once sequenced).
    """
    event_id, write = pending_write(**event)
    await session.execute(write.statement, write.params)
    wake_on_commit(session)
    return event_id


async def append_all(session: AsyncSession, *events: EventFields) -> list[uuid.UUID]:
    """:func:`append` for several events in one statement, linked in the order given."""
    writes = [pending_write(**event) for event in events]
    await session.execute(INSERT_PENDING, [write.params for _, write in writes])
    wake_on_commit(session)
    return [event_id for event_id, _ in writes]
