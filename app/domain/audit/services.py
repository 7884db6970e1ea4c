"""Audit appends: every feature records what it did with :func:`append`, in its own transaction.

An append queues the event (``audit_pending``) in the caller's session, so the action and its
event commit or roll back together, and takes no lock: the sequencer
(:mod:`app.domain.audit.sequencer`) assigns ``seq`` and links committed events into the chain in
batches, shortly after they commit.
"""

from __future__ import annotations

import uuid
from typing import cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.audit import AuditPending
from app.domain.audit.payloads import Payload, check_event_fields, validate_payload
from app.domain.audit.sequencer import wake_on_commit
from app.lib.clock import utcnow

__all__ = ("append",)

PENDING = cast("Table", AuditPending.__table__)
"""A Core insert into the table: no ORM bookkeeping on the hottest write path."""


async def append(
    session: AsyncSession,
    *,
    action: str,
    actor: str,
    request_id: str | None = None,
    system: str | None = None,
    subject_ref: str | None = None,
    payload: Payload | None = None,
) -> uuid.UUID:
    """Queue one event inside the caller's transaction; it is linked once that commits.

    Args:
        session: the caller's session; nothing is committed here.
        action: what happened, dotted (``request.received``, ``consent.granted``).
        actor: who did it (the token's ``sub``, or ``system:worker``).
        request_id: the data-subject request concerned, if any.
        system: the target system concerned, if any.
        subject_ref: a pseudonymous reference from
            :func:`app.domain.audit.references.subject_reference`, never an identity.
        payload: counts, booleans and identifiers only (see
            :func:`app.domain.audit.payloads.validate_payload`).

    Returns:
        The event's id (``event_id`` of the linked event, once sequenced).
    """
    check_event_fields(action=action, request_id=request_id, system=system, subject_ref=subject_ref)
    body = validate_payload(payload or {})
    event_id = uuid.uuid4()
    await session.execute(
        insert(PENDING).values(
            event_id=event_id,
            occurred_at=utcnow(),
            actor=actor,
            action=action,
            request_id=request_id,
            system=system,
            subject_ref=subject_ref,
            payload=body,
        )
    )
    wake_on_commit(session)
    return event_id
