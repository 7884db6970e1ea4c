"""Export artifacts of access requests: removing them from the artifact store, and deleting them
when their subject is erased."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.requests import SubjectRequest, SubjectRequestSystem
from app.domain.audit import services as audit
from app.engine.storage import ArtifactStore, artifact_store, remove_request_artifacts

__all__ = ("erase_subject_exports", "remove_artifacts")

ERASED_EXPORT_ACTION = "request.export_erased"


async def remove_artifacts(
    settings: Settings | ArtifactStore, request_id: uuid.UUID, attempts: int, keep: int | None
) -> None:
    """Delete a request's artifacts of attempts up to ``attempts`` (its attempt now), except those
    of attempt ``keep`` (off the event loop: the store may be a remote bucket)."""
    store = artifact_store(settings) if isinstance(settings, Settings) else settings
    await asyncio.to_thread(remove_request_artifacts, store, str(request_id), attempts, keep)


async def erase_subject_exports(
    session: AsyncSession,
    *,
    artifacts: ArtifactStore,
    system: str,
    subject_key_ref: str,
    erasure_id: uuid.UUID,
    actor: str,
    now: datetime,
) -> int:
    """In the caller's transaction: delete every stored export that holds the subject erased in
    ``system`` (found by the subject key reference, whatever identity the access request used),
    mark it erased so its download answers 410, and audit each; returns how many.

    The artifacts go first: if the transaction then rolls back, the download finds no artifact
    (404), never the erased person's data.
    """
    holders = (
        await session.scalars(
            select(SubjectRequest)
            .join(SubjectRequestSystem, SubjectRequestSystem.request_id == SubjectRequest.id)
            .where(
                SubjectRequestSystem.system == system,
                SubjectRequestSystem.subject_key_ref == subject_key_ref,
                SubjectRequest.kind == "access",
                SubjectRequest.artifact_attempt.is_not(None),
                SubjectRequest.id != erasure_id,
            )
            .with_for_update()
        )
    ).all()
    for request in holders:
        await remove_artifacts(artifacts, request.id, request.attempt, keep=None)
        request.artifact_attempt = None
        request.artifact_erased_at = now
        request.updated_at = now
        await audit.append(
            session,
            action=ERASED_EXPORT_ACTION,
            actor=actor,
            request_id=str(request.id),
            system=system,
            subject_ref=request.subject_ref,
            payload={"kind": request.kind, "erasure_request": str(erasure_id)},
        )
    return len(holders)
