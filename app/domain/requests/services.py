"""Request lifecycle: creation with validation, transitions (each one audit event), queries."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.requests import (
    FINAL_STATUSES,
    REQUEST_KINDS,
    REQUEST_STATUSES,
    SubjectRequest,
    SubjectRequestSystem,
)
from app.domain.audit import services as audit
from app.domain.requests.catalog import RegisteredManifest, current_manifests
from app.domain.requests.deadlines import add_months, check_extension, due_date
from app.domain.requests.schemas import ExtensionIn, RequestIn, RequestOut, SystemProgressOut
from app.engine.artifacts import artifact_path
from app.lib.auth import Principal
from app.lib.crypto import aes_key, decrypt, encrypt
from app.lib.errors import Conflict, NotFound, Unavailable, ValidationFailed

__all__ = (
    "DECISIONS",
    "ListFilter",
    "approve_request",
    "create_request",
    "decide",
    "decrypt_subject",
    "export_artifact",
    "extend_request",
    "get_request",
    "list_requests",
    "overdue_condition",
    "request_out",
    "transition",
)

DECISIONS: dict[str, tuple[frozenset[str], str, str]] = {
    "approve": (frozenset({"awaiting_approval"}), "queued", "request.approved"),
    "reject": (frozenset({"awaiting_approval"}), "rejected", "request.rejected"),
    "cancel": (frozenset({"received", "awaiting_approval", "queued"}), "cancelled", "request.cancelled"),
}
"""Decision -> (states it is allowed from, state it leads to, audit action)."""


def _now() -> datetime:
    return datetime.now(UTC)


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


def _field(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _selected_systems(body: RequestIn, registered: Mapping[str, RegisteredManifest]) -> list[str]:
    if not registered:
        raise ValidationFailed(
            "no system is registered yet", [_field("body.systems", "no manifest registered")]
        )
    if body.systems is None:
        return list(registered)
    unknown = [s for s in body.systems if s not in registered]
    if unknown:
        raise ValidationFailed(
            f"unknown systems: {', '.join(unknown)}",
            [_field(f"body.systems.{s}", "no manifest is registered for this system") for s in unknown],
        )
    return list(dict.fromkeys(body.systems))


def _check_identities(body: RequestIn, manifests: Sequence[RegisteredManifest]) -> None:
    declared = {name for m in manifests for name in m.manifest.subject.identities}
    unknown = sorted(set(body.identities) - declared)
    if unknown:
        raise ValidationFailed(
            f"unknown identity types: {', '.join(unknown)} (declared: {', '.join(sorted(declared))})",
            [
                _field(f"body.identities.{name}", "no selected system declares this identity")
                for name in unknown
            ],
        )


def _change_errors(body: RequestIn, selected: Mapping[str, RegisteredManifest]) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    for system, tables in (body.changes or {}).items():
        where = f"body.changes.{system}"
        if system not in selected:
            errors.append(_field(where, "not a selected system"))
            continue
        if not tables:
            errors.append(_field(where, "names no table"))
        manifest = selected[system].manifest
        for table, columns in tables.items():
            allowed = manifest.rectifiable_columns(table)
            if table not in manifest.tables:
                errors.append(_field(f"{where}.{table}", "the manifest does not cover this table"))
                continue
            if not columns:
                errors.append(_field(f"{where}.{table}", "names no column"))
            errors.extend(
                _field(
                    f"{where}.{table}.{column}",
                    f"not rectifiable (rectifiable: {', '.join(allowed) or 'none'})",
                )
                for column in columns
                if column not in allowed
            )
    return errors


def _check_changes(body: RequestIn, selected: Mapping[str, RegisteredManifest]) -> None:
    if body.kind != "rectification":
        if body.changes is not None:
            raise ValidationFailed(
                "changes are only for rectification", [_field("body.changes", "only for rectification")]
            )
        return
    if not body.changes:
        raise ValidationFailed("a rectification needs changes", [_field("body.changes", "required")])
    errors = _change_errors(body, selected)
    if errors:
        raise ValidationFailed("malformed changes: " + "; ".join(e["field"] for e in errors), errors)


def _validate(body: RequestIn, registered: Mapping[str, RegisteredManifest]) -> list[str]:
    if body.dry_run and body.kind != "erasure":
        raise ValidationFailed("dry_run is only for erasure", [_field("body.dry_run", "only for erasure")])
    systems = _selected_systems(body, registered)
    selected = {s: registered[s] for s in systems}
    _check_identities(body, list(selected.values()))
    _check_changes(body, selected)
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
    now = _now()
    values: dict[str, Any] = {"status": to, "updated_at": now}
    if to in FINAL_STATUSES:
        values.update(identities_encrypted=None, changes_encrypted=None, completed_at=now)
    result = await session.execute(
        update(SubjectRequest)
        .where(SubjectRequest.id == request.id, SubjectRequest.status.in_(allowed_from))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"request {request.id} is {request.status}; cannot move it to {to}")
    previous = request.status
    for name, value in values.items():
        setattr(request, name, value)
    await audit.append(
        session,
        action=action,
        actor=actor,
        request_id=str(request.id),
        subject_ref=request.subject_ref,
        payload={"kind": request.kind, "from": previous, "to": to, **(payload or {})},
    )


async def create_request(
    session: AsyncSession, settings: Settings, principal: Principal, body: RequestIn
) -> SubjectRequest:
    """Validate and store a request (``received``), then queue it or hold it for approval.

    Identities and changes are encrypted at rest; the subject reference is the HMAC of the first
    identity (by name) under the audit key, the same reference the consent ledger uses.
    """
    registered = await current_manifests(session)
    systems = _validate(body, registered)
    if not settings.audit_key:
        raise Unavailable("LETHE_AUDIT_KEY is not configured")
    now = _now()
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
        subject_ref=audit.subject_reference(settings.audit_key, None, first, body.identities[first]),
        identity_types=sorted(body.identities),
        identities_encrypted=_seal(
            settings, request_id, "identities", {"identities": body.identities, "tenant": body.tenant}
        ),
        changes_encrypted=_seal(settings, request_id, "changes", body.changes) if body.changes else None,
        attempt=0,
        updated_at=now,
    )
    session.add(request)
    session.add_all(
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
    )
    await session.flush()
    await audit.append(
        session,
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
    waits = body.kind in settings.approval_kinds
    await transition(
        session,
        request,
        to="awaiting_approval" if waits else "queued",
        action="request.awaiting_approval" if waits else "request.queued",
        actor=principal.sub,
        allowed_from=frozenset({"received"}),
    )
    return request


async def _load(session: AsyncSession, request_id: uuid.UUID, *, lock: bool = False) -> SubjectRequest:
    statement = select(SubjectRequest).where(SubjectRequest.id == request_id)
    if lock:
        statement = statement.with_for_update()
    request = (await session.scalars(statement)).first()
    if request is None:
        raise NotFound(f"request {request_id} does not exist")
    return request


async def decide(session: AsyncSession, request_id: uuid.UUID, decision: str, actor: str) -> SubjectRequest:
    """Approve, reject or cancel a request (see :data:`DECISIONS`)."""
    allowed, to, action = DECISIONS[decision]
    request = await _load(session, request_id, lock=True)
    if request.status not in allowed:
        raise Conflict(f"request {request_id} is {request.status}; it cannot be {to}")
    await transition(session, request, to=to, action=action, actor=actor, allowed_from=allowed)
    return request


async def approve_request(session: AsyncSession, request_id: uuid.UUID, actor: str) -> SubjectRequest:
    """Release a request held for approval to the workers."""
    return await decide(session, request_id, "approve", actor)


async def extend_request(
    session: AsyncSession, request_id: uuid.UUID, body: ExtensionIn, actor: str, now: datetime | None = None
) -> SubjectRequest:
    """Extend the deadline by up to two months beyond the first due date, before that date.

    Raises:
        Conflict: the request is final, or the first due date has passed.
        ValidationFailed: neither or both of ``months``/``until``, or beyond two months.
    """
    if (body.months is None) == (body.until is None):
        raise ValidationFailed(
            "give either months or until", [_field("body.months", "either months or until")]
        )
    now = now or _now()
    request = await _load(session, request_id, lock=True)
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
        actor=actor,
        request_id=str(request.id),
        subject_ref=request.subject_ref,
        payload={"kind": request.kind, "days_beyond_due": (until - request.due_at).days},
    )
    return request


# --- queries ----------------------------------------------------------------------------------


def overdue_condition(now: datetime) -> Any:
    """Not final and past the deadline in force."""
    return and_(
        SubjectRequest.status.not_in(FINAL_STATUSES),
        func.coalesce(SubjectRequest.extended_due_at, SubjectRequest.due_at) < now,
    )


@dataclass(frozen=True, kw_only=True)
class ListFilter:
    """Filters of ``GET /v1/requests``."""

    status: str | None = None
    kind: str | None = None
    overdue: bool | None = None


def _filtered(flt: ListFilter, now: datetime) -> Select[tuple[SubjectRequest]]:
    if flt.status is not None and flt.status not in REQUEST_STATUSES:
        raise ValidationFailed(
            "unknown status", [_field("query.status", f"one of {', '.join(REQUEST_STATUSES)}")]
        )
    if flt.kind is not None and flt.kind not in REQUEST_KINDS:
        raise ValidationFailed("unknown kind", [_field("query.kind", f"one of {', '.join(REQUEST_KINDS)}")])
    statement = select(SubjectRequest)
    if flt.status is not None:
        statement = statement.where(SubjectRequest.status == flt.status)
    if flt.kind is not None:
        statement = statement.where(SubjectRequest.kind == flt.kind)
    if flt.overdue is True:
        statement = statement.where(overdue_condition(now))
    elif flt.overdue is False:
        statement = statement.where(~overdue_condition(now))
    return statement


async def list_requests(
    session: AsyncSession, flt: ListFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> tuple[list[tuple[SubjectRequest, list[SubjectRequestSystem]]], tuple[datetime, uuid.UUID] | None]:
    """One page, oldest first, and the key to continue after (None on the last page)."""
    statement = _filtered(flt, _now())
    if after is not None:
        statement = statement.where(
            or_(
                SubjectRequest.received_at > after[0],
                and_(SubjectRequest.received_at == after[0], SubjectRequest.id > after[1]),
            )
        )
    statement = statement.order_by(SubjectRequest.received_at, SubjectRequest.id).limit(limit + 1)
    requests = list((await session.scalars(statement)).all())
    more = len(requests) > limit
    requests = requests[:limit]
    progress = await _progress(session, [r.id for r in requests])
    page = [(r, progress.get(r.id, [])) for r in requests]
    last = (requests[-1].received_at, requests[-1].id) if more and requests else None
    return page, last


async def _progress(
    session: AsyncSession, request_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[SubjectRequestSystem]]:
    if not request_ids:
        return {}
    rows = await session.scalars(
        select(SubjectRequestSystem)
        .where(SubjectRequestSystem.request_id.in_(request_ids))
        .order_by(SubjectRequestSystem.request_id, SubjectRequestSystem.position)
    )
    grouped: dict[uuid.UUID, list[SubjectRequestSystem]] = {}
    for row in rows:
        grouped.setdefault(row.request_id, []).append(row)
    return grouped


async def get_request(
    session: AsyncSession, request_id: uuid.UUID
) -> tuple[SubjectRequest, list[SubjectRequestSystem]]:
    """A request and its per-system progress."""
    request = await _load(session, request_id)
    return request, (await _progress(session, [request_id])).get(request_id, [])


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def request_out(
    request: SubjectRequest, progress: Sequence[SubjectRequestSystem], now: datetime | None = None
) -> RequestOut:
    """The public view of a request (no identities, no values)."""
    now = now or _now()
    due = _aware(request.effective_due_at)
    available = request.artifact_attempt is not None and request.artifact_expires_at is not None
    return RequestOut(
        id=request.id,
        kind=request.kind,
        status=request.status,
        received_at=request.received_at,
        due_at=request.due_at,
        extended_due_at=request.extended_due_at,
        extension_reason=request.extension_reason,
        overdue=request.status not in FINAL_STATUSES and due < now,
        dry_run=request.dry_run,
        subject_ref=request.subject_ref,
        identity_types=list(request.identity_types),
        attempt=request.attempt,
        started_at=request.started_at,
        completed_at=request.completed_at,
        failure_reason=request.failure_reason,
        export_available=available,
        export_expires_at=request.artifact_expires_at if available else None,
        systems=[
            SystemProgressOut(
                system=p.system,
                manifest_version=p.manifest_version,
                status=p.status,
                not_found=p.not_found,
                counts=dict(p.counts),
                error=p.error,
            )
            for p in progress
        ],
    )


def export_artifact(settings: Settings, request: SubjectRequest, fmt: str) -> Path:
    """The encrypted artifact of a completed access request.

    Raises:
        ValidationFailed: unknown format.
        Conflict: not an access request, or not completed yet.
        NotFound: the artifact expired and was purged.
    """
    if fmt not in ("json", "zip"):
        raise ValidationFailed("format must be json or zip", [_field("query.format", "json or zip")])
    if request.kind != "access":
        raise Conflict(f"request {request.id} is a {request.kind} request: it has no export")
    if request.status != "completed":
        raise Conflict(f"request {request.id} is {request.status}: the export is not ready")
    expires = request.artifact_expires_at
    if request.artifact_attempt is None or expires is None or _aware(expires) <= _now():
        raise NotFound(f"the export of request {request.id} has expired")
    path = artifact_path(Path(settings.artifacts_dir), str(request.id), request.artifact_attempt, fmt)
    if not path.exists():
        raise NotFound(f"the export of request {request.id} is no longer stored")
    return path


def artifact_ttl(settings: Settings) -> timedelta:
    """How long an export stays downloadable."""
    return timedelta(days=settings.artifact_ttl_days)
