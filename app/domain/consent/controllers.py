"""``/v1/consents``: record grants and withdrawals, read status and history.

Identities are passed as ``subject_type`` (default ``email``) and ``subject``; only their
pseudonymous reference is stored or returned.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any, cast

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.audit import ConsentEvent
from app.db.group_commit import GroupCommitter, Write
from app.domain.consent import services
from app.domain.consent.schemas import (
    ConsentEventIn,
    ConsentEventOut,
    ConsentEventPage,
    ConsentState,
    ConsentStatusOut,
)
from app.lib.auth import Principal, requires
from app.lib.clock import utcnow
from app.lib.idempotency import IdempotencyKeyHeader, run_idempotent_unit
from app.lib.pagination import clamp_limit, decode_time_cursor, encode_cursor
from app.lib.params import DATE_TIME, PageCursor, PageLimit, parse_instant
from app.lib.problems import problem_responses

__all__ = ("ConsentController",)

SubjectType = Annotated[
    str,
    QueryParameter(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="Identity type of `subject` (e.g. email)."),
]
Subject = Annotated[
    str,
    QueryParameter(min_length=1, max_length=320, description="Identity value; hashed, never stored."),
]
Purpose = Annotated[
    str,
    QueryParameter(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="The purpose consented to."),
]


def _event_out(event: ConsentEvent, audit_event_id: uuid.UUID | None = None) -> ConsentEventOut:
    return ConsentEventOut(
        id=event.id,
        subject_ref=event.subject_ref,
        purpose=event.purpose,
        granted=event.granted,
        policy_version=event.policy_version,
        text_hash=event.text_hash,
        source=event.source,
        occurred_at=event.occurred_at,
        recorded_at=event.recorded_at,
        actor=event.actor,
        audit_event_id=audit_event_id,
    )


class ConsentController(Controller):
    """The consent ledger (Art. 7(1)): who consented to what, when, under which text."""

    path = "/consents"
    tags = ["consent"]

    @post(
        "/",
        operation_id="RecordConsentEvent",
        summary="Record a grant or withdrawal",
        opt=requires("consent:write"),
        status_code=201,
        responses={
            201: ResponseSpec(
                data_container=ConsentEventOut, description="Recorded", generate_examples=False
            ),
            **problem_responses(401, 403, 409, 413, 422),
        },
    )
    async def record(
        self,
        request: Request[Principal, Any, Any],
        db_session: NamedDependency[AsyncSession],
        state: State,
        data: JSONBody[ConsentEventIn],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[ConsentEventOut]:
        """Immutable: a withdrawal is a new event, never an edit. Mirrored in the audit log.

        Answered once the consent and its audit event are durably committed, together (and the
        stored response with an `Idempotency-Key`).
        """
        principal = request.user
        subject_ref = services.consent_subject_reference(state.settings, data.subject_type, data.subject)
        consent = services.NewConsent(
            subject_ref=subject_ref,
            purpose=data.purpose,
            granted=data.granted,
            policy_version=data.policy_version,
            text_hash=data.text_hash,
            source=data.source,
            occurred_at=data.occurred_at,
        )
        committer: GroupCommitter = state.group_committer

        def prepare() -> tuple[Sequence[Write], int, object]:
            unit = services.consent_unit(consent, actor=principal.sub)
            return unit.writes, 201, _event_out(unit.event, unit.audit_event_id)

        # one commit shared with the other consents waiting, the key's record (if any) in it
        response = await run_idempotent_unit(
            session=db_session,
            committer=committer,
            client_id=principal.client_id,
            key=idempotency_key,
            operation="consents.create",
            body=data,
            prepare=prepare,
        )
        return cast("Response[ConsentEventOut]", response)

    @get(
        "/status",
        operation_id="GetConsentStatus",
        summary="Consent for a purpose, now or as of a time",
        opt=requires("consent:read"),
        responses=problem_responses(401, 403, 422),
    )
    async def status(
        self,
        db_session: NamedDependency[AsyncSession],
        state: State,
        subject: Subject,
        purpose: Purpose,
        subject_type: SubjectType = "email",
        as_of: Annotated[
            str | None, QueryParameter(description="Default: now.", schema_extra=DATE_TIME)
        ] = None,
    ) -> ConsentStatusOut:
        """Derived from the events; at the same instant a withdrawal beats a grant."""
        subject_ref = services.consent_subject_reference(state.settings, subject_type, subject)
        moment = parse_instant(as_of, "query.as_of") or utcnow()
        found = await services.consent_status(db_session, subject_ref, purpose, moment)
        decided = found.decided_by
        return ConsentStatusOut(
            subject_ref=subject_ref,
            purpose=purpose,
            as_of=moment,
            status=cast("ConsentState", found.status),
            granted=found.granted,
            decided_by=decided.id if decided else None,
            policy_version=decided.policy_version if decided else None,
        )

    @get(
        "/",
        operation_id="ListConsentEvents",
        summary="A subject's consent history",
        opt=requires("consent:read"),
        responses=problem_responses(401, 403, 422),
    )
    async def history(
        self,
        db_session: NamedDependency[AsyncSession],
        state: State,
        subject: Subject,
        subject_type: SubjectType = "email",
        purpose: Annotated[str | None, QueryParameter(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")] = None,
        cursor: PageCursor = None,
        limit: PageLimit = None,
    ) -> ConsentEventPage:
        """Oldest first, paginated by cursor."""
        size = clamp_limit(limit, state.settings.max_page_size)
        subject_ref = services.consent_subject_reference(state.settings, subject_type, subject)
        events, last = await services.consent_history_page(
            db_session, subject_ref, purpose=purpose, after=decode_time_cursor(cursor), limit=size
        )
        next_cursor = encode_cursor(last[0].isoformat(), str(last[1])) if last else None
        return ConsentEventPage(items=[_event_out(e) for e in events], next_cursor=next_cursor)
