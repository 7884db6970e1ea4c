"""Erasure plans of a request: the recorded ones, or computed live while the request waits."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.erasure import ErasurePlanRecord
from app.domain.requests.catalog import manifest_at
from app.domain.requests.queries import get_request
from app.domain.requests.schemas import ErasurePlanOut, SystemPlanOut
from app.domain.requests.services import decrypt_subject
from app.engine.erasure import ErasureOptions, plan_document, plan_erasure
from app.engine.targets import TargetRegistry
from app.lib.auth import Principal
from app.lib.errors import Conflict

__all__ = ("request_plan",)


def _system_out(document: dict[str, Any], source: str, recorded_at: datetime | None) -> SystemPlanOut:
    data = {**document, "source": source, "recorded_at": recorded_at}
    return msgspec.convert(data, SystemPlanOut, strict=False)


async def _recorded(session: AsyncSession, request_id: uuid.UUID) -> dict[str, ErasurePlanRecord]:
    rows = await session.scalars(
        select(ErasurePlanRecord)
        .where(ErasurePlanRecord.request_id == str(request_id))
        .order_by(ErasurePlanRecord.created_at)
    )
    return {row.system: row for row in rows}  # the newest record of each system wins


async def request_plan(
    session: AsyncSession,
    settings: Settings,
    targets: TargetRegistry,
    request_id: uuid.UUID,
    viewer: Principal | None = None,
) -> ErasurePlanOut:
    """The plan of every system of an erasure request.

    A system whose plan was recorded (a dry run, or the run that executed it) answers with that
    record; otherwise, while the request still holds the subject's identities (before it runs),
    the plan is computed live against the target, read-only.

    Raises:
        NotFound: no such request, or another client's (``viewer`` without ``requests:admin``).
        Conflict: the request is not an erasure.
        TargetUnavailable: a target cannot be reached for a live plan.
    """
    request, progress = await get_request(session, request_id, viewer)
    if request.kind != "erasure":
        raise Conflict(f"request {request_id} is a {request.kind} request; plans exist for erasure only")
    recorded = await _recorded(session, request_id)
    systems: list[SystemPlanOut] = []
    live_identities = None
    for entry in progress:
        record = recorded.get(entry.system)
        if record is not None:
            systems.append(_system_out(record.plan, "recorded", record.created_at))
            continue
        if request.identities_encrypted is None:
            continue
        if live_identities is None:
            live_identities = decrypt_subject(settings, request)
        identities, tenant, _ = live_identities
        manifest = await manifest_at(session, entry.system, entry.manifest_version)
        options = ErasureOptions(
            secret=settings.audit_key,
            batch_threshold=settings.erasure_batch_threshold,
            batch_size=settings.erasure_batch_size,
            tenant=tenant,
        )
        async with targets.connect(entry.system, manifest.connection) as conn:
            try:
                plan = await plan_erasure(conn, manifest, identities, options)
            finally:
                await conn.rollback()
        systems.append(_system_out(plan_document(plan), "live", None))
    return ErasurePlanOut(request_id=request.id, dry_run=request.dry_run, systems=systems)
