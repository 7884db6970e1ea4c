"""Reading requests: filters, pages, the public view, and the export artifact of a request."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, and_, bindparam, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.requests import (
    FINAL_STATUSES,
    REQUEST_KINDS,
    REQUEST_STATUSES,
    SubjectRequest,
    SubjectRequestSystem,
)
from app.db.store import DetachedRead
from app.domain.requests.schemas import (
    RequestKind,
    RequestOut,
    RequestStatus,
    SystemProgressOut,
    SystemStatus,
)
from app.engine.storage import STORAGE_ERRORS, ArtifactMissing, ArtifactReader, artifact_name, artifact_store
from app.lib.auth import ADMIN_SCOPE, Principal
from app.lib.clock import as_utc, utcnow
from app.lib.errors import Conflict, ExportErased, NotFound, Unavailable, ValidationFailed, field_error

__all__ = (
    "ListFilter",
    "artifact_ttl",
    "get_request",
    "list_requests",
    "load_request",
    "open_export",
    "overdue_condition",
    "request_out",
    "visible_to",
)


def visible_to(viewer: Principal | None) -> Any:
    """The condition limiting requests to those ``viewer``'s client created.

    None (workers, CLI) and holders of ``requests:admin`` see every request. Another client's
    request is indistinguishable from one that does not exist.
    """
    if viewer is None or ADMIN_SCOPE in viewer.scopes:
        return true()
    return SubjectRequest.client_id == viewer.client_id


def sees(viewer: Principal | None, request: SubjectRequest) -> bool:
    """:func:`visible_to` for a request already read."""
    return viewer is None or ADMIN_SCOPE in viewer.scopes or request.client_id == viewer.client_id


async def load_request(
    session: AsyncSession,
    request_id: uuid.UUID,
    *,
    lock: bool = False,
    viewer: Principal | None = None,
) -> SubjectRequest:
    """The request row (locked FOR UPDATE when ``lock``, where the database has row locks).

    Raises:
        NotFound: no such request, or it belongs to another client than ``viewer``'s.
    """
    statement = select(SubjectRequest).where(SubjectRequest.id == request_id, visible_to(viewer))
    if lock:
        statement = statement.with_for_update()
    request = (await session.scalars(statement)).first()
    if request is None:
        raise NotFound(f"request {request_id} does not exist")
    return request


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
    viewer: Principal | None = None


def _filtered(flt: ListFilter, now: datetime) -> Select[tuple[SubjectRequest]]:
    if flt.status is not None and flt.status not in REQUEST_STATUSES:
        raise ValidationFailed(
            "unknown status", [field_error("query.status", f"one of {', '.join(REQUEST_STATUSES)}")]
        )
    if flt.kind is not None and flt.kind not in REQUEST_KINDS:
        raise ValidationFailed(
            "unknown kind", [field_error("query.kind", f"one of {', '.join(REQUEST_KINDS)}")]
        )
    statement = select(SubjectRequest).where(visible_to(flt.viewer))
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
    statement = _filtered(flt, utcnow())
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


_PROGRESS = DetachedRead(
    SubjectRequestSystem,
    SubjectRequestSystem.request_id.in_(bindparam("request_ids", expanding=True)),
    order_by=[SubjectRequestSystem.request_id, SubjectRequestSystem.position],
)
_REQUEST = DetachedRead(SubjectRequest, SubjectRequest.id == bindparam("request_id"))


async def _progress(
    session: AsyncSession, request_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[SubjectRequestSystem]]:
    if not request_ids:
        return {}
    grouped: dict[uuid.UUID, list[SubjectRequestSystem]] = {}
    for row in await _PROGRESS(session, request_ids=list(request_ids)):
        grouped.setdefault(row.request_id, []).append(row)
    return grouped


async def get_request(
    session: AsyncSession, request_id: uuid.UUID, viewer: Principal | None = None
) -> tuple[SubjectRequest, list[SubjectRequestSystem]]:
    """A request and its per-system progress (404 for another client's request), read for a view
    (instances of no session: see :class:`app.db.store.DetachedRead`)."""
    found = await _REQUEST(session, request_id=request_id)
    if not found or not sees(viewer, found[0]):
        raise NotFound(f"request {request_id} does not exist")
    return found[0], (await _progress(session, [request_id])).get(request_id, [])


def request_out(
    request: SubjectRequest, progress: Sequence[SubjectRequestSystem], now: datetime | None = None
) -> RequestOut:
    """The public view of a request (no identities, no values)."""
    now = now or utcnow()
    due = as_utc(request.effective_due_at)
    available = (
        request.artifact_attempt is not None
        and request.artifact_expires_at is not None
        and request.status != "awaiting_systems"  # downloadable once every system is done
    )
    return RequestOut(
        id=request.id,
        kind=cast("RequestKind", request.kind),
        status=cast("RequestStatus", request.status),
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
                status=cast("SystemStatus", p.status),
                not_found=p.not_found,
                counts=dict(p.counts),
                error=p.error,
            )
            for p in progress
        ],
    )


async def open_export(settings: Settings, request: SubjectRequest, fmt: str) -> ArtifactReader:
    """The encrypted artifact of a completed access request, opened for reading from the store.

    Raises:
        ValidationFailed: unknown format.
        Conflict: not an access request, or not completed yet.
        NotFound: the artifact expired and was purged.
        ExportErased: the subject was erased after the export (410).
        Unavailable: the artifact store cannot be reached (503).
    """
    if fmt not in ("json", "zip"):
        raise ValidationFailed("format must be json or zip", [field_error("query.format", "json or zip")])
    if request.kind != "access":
        raise Conflict(f"request {request.id} is a {request.kind} request: it has no export")
    if request.status != "completed":
        raise Conflict(f"request {request.id} is {request.status}: the export is not ready")
    if request.artifact_erased_at is not None:
        raise ExportErased(
            f"the export of request {request.id} was deleted because its subject was erased afterwards"
        )
    expires = request.artifact_expires_at
    if request.artifact_attempt is None or expires is None or as_utc(expires) <= utcnow():
        raise NotFound(f"the export of request {request.id} has expired")
    name = artifact_name(str(request.id), request.artifact_attempt, fmt)
    try:
        return await asyncio.to_thread(artifact_store(settings).open, name)
    except ArtifactMissing:
        raise NotFound(f"the export of request {request.id} is no longer stored") from None
    except STORAGE_ERRORS as exc:
        raise Unavailable(f"the artifact store cannot be read ({type(exc).__name__})") from None


def artifact_ttl(settings: Settings) -> timedelta:
    """How long an export stays downloadable."""
    return timedelta(days=settings.artifact_ttl_days)
