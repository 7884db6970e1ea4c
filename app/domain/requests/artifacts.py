"""Export artifacts of access requests: removing their files, and deleting them when their
subject is erased."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.requests import SubjectRequest, SubjectRequestSystem
from app.domain.audit import services as audit

__all__ = ("erase_subject_exports", "remove_artifacts")

ERASED_EXPORT_ACTION = "request.export_erased"


def remove_artifacts(directory: Path, request_id: uuid.UUID, keep: int | None) -> None:
    """Delete a request's artifact files, except those of attempt ``keep``."""
    if not directory.is_dir():
        return
    for path in directory.glob(f"{request_id}.*"):
        attempt = path.name.split(".")[1]
        if keep is None or attempt != str(keep):
            path.unlink(missing_ok=True)


async def erase_subject_exports(
    session: AsyncSession,
    *,
    directory: Path,
    system: str,
    subject_key_ref: str,
    erasure_id: uuid.UUID,
    actor: str,
    now: datetime,
) -> int:
    """In the caller's transaction: delete every stored export that holds the subject erased in
    ``system`` (found by the subject key reference, whatever identity the access request used),
    mark it erased so its download answers 410, and audit each; returns how many.

    The files go first: if the transaction then rolls back, the download finds no file (404),
    never the erased person's data.
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
        remove_artifacts(directory, request.id, keep=None)
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
