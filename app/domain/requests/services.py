"""Request lifecycle: creation with validation, secrets at rest, transitions (each one audit event)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
from sqlalchemy import Table, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.requests import (
    FINAL_STATUSES,
    SubjectRequest,
    SubjectRequestSystem,
)
from app.domain.audit import services as audit
from app.domain.audit.references import subject_reference
from app.domain.external import tasks
from app.domain.external.parts import clear_parts
from app.domain.recipients.services import record_recipients
from app.domain.requests.catalog import RegisteredManifest, database_manifests, newest_versions
from app.domain.requests.deadlines import add_months, check_extension, due_date
from app.domain.requests.identities import check_identity_values
from app.domain.requests.queries import load_request
from app.domain.requests.schemas import ExtensionIn, RequestIn
from app.domain.requests.wakeup import queued_in
from app.domain.webhooks import outbox
from app.domain.webhooks.services import attach_callback
from app.lib.auth import Principal
from app.lib.clock import utcnow
from app.lib.crypto import aes_key, decrypt, encrypt
from app.lib.errors import Conflict, SelfApproval, Unavailable, ValidationFailed, field_error
from app.manifest.model import IdentityMatch, default_match

__all__ = (
    "DECISIONS",
    "create_request",
    "create_request_rows",
    "decide",
    "decrypt_subject",
    "extend_request",
    "transition",
)

DECISIONS: dict[str, tuple[frozenset[str], str, str]] = {
    "approve": (frozenset({"awaiting_approval"}), "queued", "request.approved"),
    "reject": (frozenset({"awaiting_approval"}), "rejected", "request.rejected"),
    "cancel": (frozenset({"received", "awaiting_approval", "queued"}), "cancelled", "request.cancelled"),
}
"""Decision -> (states it is allowed from, state it leads to, audit action)."""


REQUESTS = cast("Table", SubjectRequest.__table__)
PROGRESS = cast("Table", SubjectRequestSystem.__table__)
_INSERT_REQUEST = insert(REQUESTS)
_INSERT_PROGRESS = insert(PROGRESS)


def _columns(row: SubjectRequest | SubjectRequestSystem, table: Table) -> dict[str, Any]:
    """The column values set on a transient ``row`` (those left unset are NULL in the row)."""
    values = row.__dict__
    return {column.key: values[column.key] for column in table.columns if column.key in values}


# --- secrets at rest --------------------------------------------------------------------------


def _key(settings: Settings) -> bytes:
    if not settings.artifact_key:
        raise Unavailable("LETHE_ARTIFACT_KEY is not configured: requests cannot store identities")
    return aes_key(settings.artifact_key)


def _seal(settings: Settings, request_id: uuid.UUID, purpose: str, value: object) -> bytes:
    return encrypt(
        _key(settings), msgspec.json.encode(value), f"lethe-request:{request_id}:{purpose}".encode()
    )


def _open(settings: Settings, request_id: uuid.UUID, purpose: str, blob: bytes) -> Any:
    return msgspec.json.decode(
        decrypt(_key(settings), blob, f"lethe-request:{request_id}:{purpose}".encode())
    )


def decrypt_subject(
    settings: Settings, request: SubjectRequest
) -> tuple[dict[str, str], str | None, dict[str, dict[str, dict[str, Any]]]]:
    """The identities, tenant and rectification changes of a request that is not final yet."""
    if request.identities_encrypted is None:
        raise Conflict(f"request {request.id} no longer holds the subject's identities")
    sealed = _open(settings, request.id, "identities", request.identities_encrypted)
    changes = (
        _open(settings, request.id, "changes", request.changes_encrypted) if request.changes_encrypted else {}
    )
    return dict(sealed["identities"]), sealed.get("tenant"), changes


# --- validation -------------------------------------------------------------------------------


def _selected_systems(body: RequestIn, registered: Mapping[str, RegisteredManifest]) -> list[str]:
    if not registered:
        raise ValidationFailed(
            "no system is registered yet", [field_error("body.systems", "no manifest registered")]
        )
    if body.systems is None:
        return list(registered)
    unknown = [s for s in body.systems if s not in registered]
    if unknown:
        raise ValidationFailed(
            f"unknown systems: {', '.join(unknown)}",
            [field_error(f"body.systems.{s}", "no manifest is registered for this system") for s in unknown],
        )
    return list(dict.fromkeys(body.systems))


def _check_identities(
    body: RequestIn, manifests: Sequence[RegisteredManifest], also: set[str] | None = None
) -> None:
    declared = {name for m in manifests for name in m.manifest.subject.identities} | (also or set())
    unknown = sorted(set(body.identities) - declared)
    if unknown:
        raise ValidationFailed(
            f"unknown identity types: {', '.join(unknown)} (declared: {', '.join(sorted(declared))})",
            [
                field_error(f"body.identities.{name}", "no selected system declares this identity")
                for name in unknown
            ],
        )


def _match_rule(
    name: str, systems: Sequence[str], registered: Mapping[str, RegisteredManifest]
) -> IdentityMatch:
    """The rule identity ``name`` is compared by: that of the first selected system declaring it
    (so the request's reference equals the one its lookup implies)."""
    for system in systems:
        subject = registered[system].manifest.subject
        if name in subject.identities:
            return subject.match_rule(name)
    return default_match(name)


def _change_errors(
    body: RequestIn, selected: Mapping[str, RegisteredManifest], external: Collection[str] = ()
) -> list[dict[str, str]]:
    """``external`` systems declare no tables: their changes are ``{record: {field: value}}``
    under names of the caller's choosing, handed to the system with its task's identities."""
    errors: list[dict[str, str]] = []
    for system, tables in (body.changes or {}).items():
        where = f"body.changes.{system}"
        if system in external:
            if not tables or not all(tables.values()):
                errors.append(field_error(where, "names no record and field"))
            continue
        if system not in selected:
            errors.append(field_error(where, "not a selected system"))
            continue
        if not tables:
            errors.append(field_error(where, "names no table"))
        manifest = selected[system].manifest
        for table, columns in tables.items():
            allowed = manifest.rectifiable_columns(table)
            if table not in manifest.tables:
                errors.append(field_error(f"{where}.{table}", "the manifest does not cover this table"))
                continue
            if not columns:
                errors.append(field_error(f"{where}.{table}", "names no column"))
            errors.extend(
                field_error(
                    f"{where}.{table}.{column}",
                    f"not rectifiable (rectifiable: {', '.join(allowed) or 'none'})",
                )
                for column in columns
                if column not in allowed
            )
    return errors


def _check_changes(
    body: RequestIn, selected: Mapping[str, RegisteredManifest], external: Collection[str] = ()
) -> None:
    if body.kind != "rectification":
        if body.changes is not None:
            raise ValidationFailed(
                "changes are only for rectification", [field_error("body.changes", "only for rectification")]
            )
        return
    if not body.changes:
        raise ValidationFailed("a rectification needs changes", [field_error("body.changes", "required")])
    errors = _change_errors(body, selected, external)
    if errors:
        raise ValidationFailed("malformed changes: " + "; ".join(e["field"] for e in errors), errors)


def _validate(
    body: RequestIn,
    registered: Mapping[str, RegisteredManifest],
    external_identities: set[str] | None = None,
    external: Collection[str] = (),
) -> list[str]:
    if body.dry_run and body.kind != "erasure":
        raise ValidationFailed(
            "dry_run is only for erasure", [field_error("body.dry_run", "only for erasure")]
        )
    systems = _selected_systems(body, registered)
    selected = {s: registered[s] for s in systems}
    _check_identities(body, list(selected.values()), external_identities)
    check_identity_values(body.identities, list(selected.values()))
    _check_changes(body, selected, external)
    return systems


# --- transitions ------------------------------------------------------------------------------


async def transition(
    session: AsyncSession,
    request: SubjectRequest,
    *,
    to: str,
    action: str,
    actor: str,
    allowed_from: frozenset[str],
    payload: Mapping[str, Any] | None = None,
) -> None:
    """Move ``request`` to ``to`` if it is still in one of ``allowed_from``, with one audit event.

    The UPDATE is conditional on the current state, so two concurrent decisions cannot both win.

    Raises:
        Conflict: the request is not (or no longer) in an allowed state.
    """
    now = utcnow()
    values: dict[str, Any] = {"status": to, "updated_at": now}
    if to in FINAL_STATUSES:
        values.update(identities_encrypted=None, changes_encrypted=None, completed_at=now)
    result = await session.execute(
        update(REQUESTS)
        .where(REQUESTS.c.id == request.id, REQUESTS.c.status.in_(allowed_from))
        .values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"request {request.id} is {request.status}; cannot move it to {to}")
    previous = request.status
    for name, value in values.items():
        setattr(request, name, value)
    await _entered(session, request, now)
    await audit.append(session, **_moved(request, previous, action, actor, payload))


def _moved(
    request: SubjectRequest, previous: str, action: str, actor: str, payload: Mapping[str, Any] | None = None
) -> audit.EventFields:
    """The audit event of ``request``'s move from ``previous`` to its status."""
    return audit.EventFields(
        action=action,
        actor=actor,
        request_id=str(request.id),
        subject_ref=request.subject_ref,
        payload={"kind": request.kind, "from": previous, "to": request.status, **(payload or {})},
    )


async def _entered(session: AsyncSession, request: SubjectRequest, now: datetime) -> None:
    """What entering its status sets off for ``request`` (in the caller's transaction): wake
    workers and open its external tasks when queued, list recipients when completed, cancel
    tasks when ended otherwise, announce a transition event."""
    to = request.status
    if to in FINAL_STATUSES and request.holds_tasks:
        await clear_parts(session, request.id)
    if to == "queued":
        await queued_in(session)
        await tasks.open_tasks(session, request, now)
    elif to == "completed":
        await record_recipients(session, request, now)
    elif to in FINAL_STATUSES:  # failed, rejected, cancelled: nothing more is expected of any system
        await tasks.cancel_tasks(session, request, now)
    if to in outbox.TRANSITION_EVENTS:
        await outbox.request_event(session, request, outbox.TRANSITION_EVENTS[to])


async def create_request(
    session: AsyncSession, settings: Settings, principal: Principal, body: RequestIn
) -> SubjectRequest:
    """Validate and store a request (``received``), then queue it or hold it for approval.

    Identities and changes are encrypted at rest; the subject reference is the HMAC of the first
    identity (by name) under the audit key, the same reference the consent ledger uses.
    """
    return (await create_request_rows(session, settings, principal, body))[0]


async def create_request_rows(
    session: AsyncSession, settings: Settings, principal: Principal, body: RequestIn
) -> tuple[SubjectRequest, list[SubjectRequestSystem]]:
    """:func:`create_request`, also returning its per-system rows, so a response can be built
    without reading them back."""
    rows = await newest_versions(session)  # one read for database and external systems
    registered = database_manifests(rows)
    externals = tasks.external_systems(rows)
    database_systems, chosen = tasks.split_selection(body.systems, externals)
    body = msgspec.structs.replace(body, systems=database_systems)
    systems = _validate(body, registered, tasks.needed_identities(chosen, externals), chosen)
    if not settings.audit_key:
        raise Unavailable("LETHE_AUDIT_KEY is not configured")
    now = utcnow()
    request_id = uuid.uuid4()
    first = min(body.identities)
    request = SubjectRequest(
        id=request_id,
        kind=body.kind,
        status="received",
        received_at=now,
        due_at=due_date(now),
        systems=systems,
        manifest_versions={s: registered[s].version for s in systems},
        dry_run=body.dry_run,
        client_id=principal.client_id,
        actor=principal.sub,
        subject_ref=subject_reference(
            settings.audit_key, None, first, body.identities[first], _match_rule(first, systems, registered)
        ),
        identity_types=sorted(body.identities),
        identities_encrypted=_seal(
            settings, request_id, "identities", {"identities": body.identities, "tenant": body.tenant}
        ),
        changes_encrypted=_seal(settings, request_id, "changes", body.changes) if body.changes else None,
        attempt=0,
        holds_tasks=bool(chosen),
        updated_at=now,
    )
    progress = [
        SubjectRequestSystem(
            request_id=request_id,
            system=system,
            position=index,
            manifest_version=registered[system].version,
            status="pending",
            not_found=False,
            counts={},
            attempt=0,
            updated_at=now,
        )
        for index, system in enumerate(systems)
    ]
    # Core inserts of the rows the objects describe: the objects stay out of the session (no
    # unit-of-work flush on the hot path) and answer the response as they are. The row goes in
    # at the status it moves to at once (queued, or awaiting approval); the trail still records
    # both steps, and request.received is announced as received.
    waits = body.kind in settings.approval_kinds
    to = "awaiting_approval" if waits else "queued"
    await session.execute(_INSERT_REQUEST, {**_columns(request, REQUESTS), "status": to})
    if progress:
        await session.execute(_INSERT_PROGRESS, [_columns(row, PROGRESS) for row in progress])
    await tasks.hold_tasks(session, request, chosen, externals, now)
    if body.callback_url is not None:
        await attach_callback(session, settings, principal, request_id, body.callback_url)
    received = audit.EventFields(
        action="request.received",
        actor=principal.sub,
        request_id=str(request_id),
        subject_ref=request.subject_ref,
        payload={
            "kind": body.kind,
            "systems": systems,
            "dry_run": body.dry_run,
            "identity_types": sorted(body.identities),
        },
    )
    await outbox.request_event(session, request, "request.received")
    request.status = to
    await _entered(session, request, now)
    await audit.append_all(session, received, _moved(request, "received", f"request.{to}", principal.sub))
    return request, progress


async def decide(
    session: AsyncSession,
    request_id: uuid.UUID,
    decision: str,
    principal: Principal,
    *,
    four_eyes: bool = True,
) -> SubjectRequest:
    """Approve, reject or cancel a request (see :data:`DECISIONS`) on behalf of ``principal``.

    Raises:
        NotFound: no such request, or another client's (without ``requests:admin``).
        SelfApproval: ``four_eyes`` and the approver is the request's creator.
        Conflict: the request is not in a state the decision is allowed from.
    """
    allowed, to, action = DECISIONS[decision]
    request = await load_request(session, request_id, lock=True, viewer=principal)
    if decision == "approve" and four_eyes and _same_principal(request, principal):
        raise SelfApproval(f"request {request_id} was created by this principal; another must approve it")
    if request.status not in allowed:
        raise Conflict(f"request {request_id} is {request.status}; it cannot be {to}")
    await transition(session, request, to=to, action=action, actor=principal.sub, allowed_from=allowed)
    return request


def _same_principal(request: SubjectRequest, principal: Principal) -> bool:
    """The token's subject or its client created the request: not a second pair of eyes."""
    return principal.sub == request.actor or principal.client_id == request.client_id


async def extend_request(
    session: AsyncSession,
    request_id: uuid.UUID,
    body: ExtensionIn,
    principal: Principal,
    now: datetime | None = None,
) -> SubjectRequest:
    """Extend the deadline by up to two months beyond the first due date, before that date.

    Raises:
        Conflict: the request is final, or the first due date has passed.
        ValidationFailed: neither or both of ``months``/``until``, or beyond two months.
    """
    if (body.months is None) == (body.until is None):
        raise ValidationFailed(
            "give either months or until", [field_error("body.months", "either months or until")]
        )
    now = now or utcnow()
    request = await load_request(session, request_id, lock=True, viewer=principal)
    if request.status in FINAL_STATUSES:
        raise Conflict(f"request {request_id} is {request.status}; it cannot be extended")
    until = add_months(request.due_at, body.months) if body.months is not None else body.until
    assert until is not None  # noqa: S101 - one of the two is set (checked above)
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    check_extension(due_at=request.due_at, until=until, now=now)
    request.extended_due_at = until
    request.extension_reason = body.reason
    request.updated_at = now
    await session.flush()
    await audit.append(
        session,
        action="request.extended",
        actor=principal.sub,
        request_id=str(request.id),
        subject_ref=request.subject_ref,
        payload={"kind": request.kind, "days_beyond_due": (until - request.due_at).days},
    )
    return request
