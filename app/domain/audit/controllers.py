"""``/v1/audit``: events with filters, chain verification, signed checkpoints (audit:read).

Reads of the chain first link what is pending (read-your-writes: an action's event is listed
right after the action's response); ``/pending`` shows what the sequencer has not linked yet.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.audit import AuditEvent, AuditPending
from app.domain.audit import chain, queries, references
from app.domain.audit.schemas import (
    AuditEventOut,
    AuditEventPage,
    ChainVerification,
    CheckpointOut,
    PendingAuditEventOut,
    PendingAuditEventPage,
)
from app.domain.audit.sequencer import sequence_now
from app.lib.auth import requires
from app.lib.errors import ValidationFailed, field_error
from app.lib.pagination import clamp_limit, decode_cursor, encode_cursor
from app.lib.params import DATE_TIME, PageCursor, PageLimit, parse_instant
from app.lib.problems import problem_responses

__all__ = ("AuditController",)

FLUSH_BATCHES = 10
"""An audit read links at most this many batches of pending events before it reads."""
MAX_SEQ = 2**63 - 1
"""The largest audit sequence number the store can hold (BIGINT)."""
CHECKPOINT_DOC = "With checkpoint_hash, _time and _signature: a checkpoint to verify against."


def _event_out(event: AuditEvent) -> AuditEventOut:
    return AuditEventOut(
        seq=event.seq,
        occurred_at=event.occurred_at,
        actor=event.actor,
        action=event.action,
        request_id=event.request_id,
        system=event.system,
        subject_ref=event.subject_ref,
        payload=event.payload,
        prev_hash=event.prev_hash,
        hash=event.hash,
        event_id=event.event_id,
    )


def _pending_out(event: AuditPending) -> PendingAuditEventOut:
    return PendingAuditEventOut(
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        actor=event.actor,
        action=event.action,
        request_id=event.request_id,
        system=event.system,
        subject_ref=event.subject_ref,
        payload=event.payload,
    )


def _after(cursor: str | None) -> int | None:
    """The position a page cursor continues after (a seq, or a queue id); a forged one is a 422."""
    key = decode_cursor(cursor, 1)
    if key is None:
        return None
    if not isinstance(key[0], int) or isinstance(key[0], bool) or not 0 <= key[0] <= MAX_SEQ:
        raise ValidationFailed("malformed cursor", [field_error("query.cursor", "malformed")])
    return key[0]


async def _link_pending(state: State) -> None:
    """Link the events committed before this read (bounded), so the read sees them in the chain."""
    settings: Settings = state.settings
    size = settings.audit_sequencer_batch_size
    await sequence_now(state.store_engine, batch_size=size, max_events=FLUSH_BATCHES * size)


def _checkpoint_from_query(
    seq: int | None, head_hash: str | None, time: str | None, signature: str | None
) -> chain.Checkpoint | None:
    given = [v is not None for v in (seq, head_hash, time, signature)]
    if not any(given):
        return None
    if not all(given):
        raise ValidationFailed(
            "a checkpoint needs checkpoint_seq, _hash, _time and _signature together",
            [
                {
                    "field": "query.checkpoint_seq",
                    "message": "all four checkpoint parameters together",
                }
            ],
        )
    return chain.Checkpoint(
        seq=seq or 0, head_hash=head_hash or "", time=time or "", signature=signature or ""
    )


class AuditController(Controller):
    """Read the audit log and check that nobody rewrote it."""

    path = "/audit"
    tags = ["audit"]

    @get(
        "/events",
        operation_id="ListAuditEvents",
        opt=requires("audit:read"),
        summary="Audit events, filtered, in seq order",
        responses=problem_responses(401, 403, 422),
    )
    async def list_events(
        self,
        db_session: NamedDependency[AsyncSession],
        state: State,
        action: FromQuery[str | None] = None,
        request_id: FromQuery[str | None] = None,
        system: Annotated[str | None, QueryParameter(description="Only events of this system.")] = None,
        subject_type: Annotated[str | None, QueryParameter(description="Identity type, e.g. email.")] = None,
        subject: Annotated[
            str | None,
            QueryParameter(
                description="Identity value; its reference is computed, the value is never stored."
            ),
        ] = None,
        since: Annotated[
            str | None, QueryParameter(description="Inclusive lower bound.", schema_extra=DATE_TIME)
        ] = None,
        until: Annotated[
            str | None, QueryParameter(description="Exclusive upper bound.", schema_extra=DATE_TIME)
        ] = None,
        cursor: PageCursor = None,
        limit: PageLimit = None,
    ) -> AuditEventPage:
        """Filter by action, request, system, time, and subject identity (hashed first)."""
        size = clamp_limit(limit, state.settings.max_page_size)
        after = _after(cursor)
        await _link_pending(state)
        refs = None
        if subject is not None or subject_type is not None:
            if not subject or not subject_type:
                raise ValidationFailed(
                    "subject and subject_type go together",
                    [field_error("query.subject", "needs subject_type")],
                )
            refs = await references.subject_references_for(
                db_session, state.settings, subject_type, subject, system
            )
        related = await queries.requests_of_subject(db_session, refs) if refs else []
        flt = queries.EventFilter(
            action=action,
            request_id=request_id,
            system=system,
            subject_refs=refs,
            subject_request_ids=related,
            since=parse_instant(since, "query.since"),
            until=parse_instant(until, "query.until"),
        )
        events, last = await queries.list_events(db_session, flt, after_seq=after, limit=size)
        return AuditEventPage(
            items=[_event_out(e) for e in events],
            next_cursor=encode_cursor(last) if last is not None else None,
        )

    @get(
        "/verify",
        operation_id="VerifyAuditChain",
        opt=requires("audit:read"),
        summary="Recompute the hash chain",
        responses=problem_responses(401, 403, 422, 503),
    )
    async def verify(
        self,
        db_session: NamedDependency[AsyncSession],
        state: State,
        checkpoint_seq: Annotated[
            int | None, QueryParameter(ge=0, le=MAX_SEQ, description=CHECKPOINT_DOC)
        ] = None,
        checkpoint_hash: FromQuery[str | None] = None,
        checkpoint_time: FromQuery[str | None] = None,
        checkpoint_signature: FromQuery[str | None] = None,
    ) -> ChainVerification:
        """Report ok, or the first broken seq and why; a checkpoint also detects a cut tail."""
        checkpoint = _checkpoint_from_query(
            checkpoint_seq, checkpoint_hash, checkpoint_time, checkpoint_signature
        )
        checkpoints = chain.sink_checkpoints(state.settings)
        if checkpoint is not None:
            chain.verify_checkpoint_signature(state.settings, checkpoint)
            checkpoints.append(checkpoint)
        await _link_pending(state)
        report = await chain.verify_chain(db_session, checkpoints)
        return ChainVerification(
            ok=report.ok,
            checked=report.checked,
            head_seq=report.head_seq,
            head_hash=report.head_hash,
            broken_seq=report.broken_seq,
            reason=report.reason,
            detail=report.detail,
            checkpoint_seq=checkpoint.seq if checkpoint else None,
            pending=report.pending,
        )

    @get(
        "/checkpoints",
        operation_id="GetAuditCheckpoint",
        opt=requires("audit:read"),
        summary="A signed checkpoint of the head",
        responses=problem_responses(401, 403, 503),
    )
    async def checkpoint(self, db_session: NamedDependency[AsyncSession], state: State) -> CheckpointOut:
        """Keep the result outside the database; verifying against it later detects truncation."""
        await _link_pending(state)
        cp = await chain.make_checkpoint(db_session, state.settings)
        return CheckpointOut(
            seq=cp.seq,
            head_hash=cp.head_hash,
            time=cp.time,
            signature=cp.signature,
            algorithm=cp.algorithm,
            public_key=cp.public_key,
        )

    @get(
        "/pending",
        operation_id="ListPendingAuditEvents",
        opt=requires("audit:read"),
        summary="Audit events committed and not yet linked into the chain",
        responses=problem_responses(401, 403, 422),
    )
    async def list_pending(
        self,
        db_session: NamedDependency[AsyncSession],
        state: State,
        cursor: PageCursor = None,
        limit: PageLimit = None,
    ) -> PendingAuditEventPage:
        """Queue order; each gets its ``seq`` when the sequencer links it (usually well under a second)."""
        size = clamp_limit(limit, state.settings.max_page_size)
        events, last = await queries.list_pending(db_session, after_id=_after(cursor), limit=size)
        return PendingAuditEventPage(
            items=[_pending_out(e) for e in events],
            next_cursor=encode_cursor(last) if last is not None else None,
        )
