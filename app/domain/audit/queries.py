"""Reading the audit log: the head, filtered pages of linked events, pending events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.audit import AuditEvent, AuditPending
from app.db.requests import SubjectRequest, SubjectRequestSystem
from app.domain.audit.links import GENESIS_HASH

__all__ = ("EventFilter", "head", "list_events", "list_pending", "requests_of_subject")


async def head(session: AsyncSession) -> tuple[int, str]:
    """``(seq, hash)`` of the newest linked event, ``(0, GENESIS_HASH)`` on an empty chain."""
    row = (
        await session.execute(
            select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
        )
    ).first()
    return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))


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
    """One page of linked events in ``seq`` order, and the ``seq`` to continue after (None at the end)."""
    query = _filtered(select(AuditEvent), flt).order_by(AuditEvent.seq).limit(limit + 1)
    if after_seq is not None:
        query = query.where(AuditEvent.seq > after_seq)
    events = list((await session.scalars(query)).all())
    if len(events) > limit:
        return events[:limit], events[limit - 1].seq
    return events, None


async def list_pending(
    session: AsyncSession, *, after_id: int | None, limit: int
) -> tuple[list[AuditPending], int | None]:
    """One page of events committed and not linked yet, in queue order, and the id to continue after."""
    query = select(AuditPending).order_by(AuditPending.id).limit(limit + 1)
    if after_id is not None:
        query = query.where(AuditPending.id > after_id)
    events = list((await session.scalars(query)).all())
    if len(events) > limit:
        return events[:limit], events[limit - 1].id
    return events, None
