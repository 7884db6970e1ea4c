"""Export parts of external systems: what a system reports for an access request, kept
encrypted with its task until the worker assembles the subject's export.

A part is personal data. It is sealed in the frames of the export artifacts
(:mod:`app.engine.artifacts`, AES-GCM under ``LETHE_ARTIFACT_KEY``, bound to the request and
system) and stored in the task's row, so it is written in the same transaction as the report.
It is deleted when the export is assembled, or when the request ends any other way.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.external import ExternalTask
from app.domain.requests.catalog import external_at
from app.engine.artifacts import EncryptedWriter, read_frames
from app.engine.runs import ExternalSection
from app.lib.crypto import aes_key
from app.lib.errors import Unavailable

__all__ = ("clear_parts", "external_sections", "open_part", "seal_part")


class _Sealed:
    """An in-memory artifact sink: the sealed frames end up in :attr:`value`."""

    def __init__(self) -> None:
        self.value = bytearray()

    def write(self, data: bytes) -> None:
        self.value += data

    def commit(self) -> None:
        """Nothing to commit: the caller takes the bytes."""

    def abort(self) -> None:
        self.value.clear()


def _key(settings: Settings) -> bytes:
    if not settings.artifact_key:
        raise Unavailable("LETHE_ARTIFACT_KEY is not configured: export parts cannot be stored")
    return aes_key(settings.artifact_key)


def _context(request_id: uuid.UUID, system: str) -> bytes:
    return f"lethe-export-part:{request_id}:{system}:".encode()


def seal_part(settings: Settings, request_id: uuid.UUID, system: str, encoded: bytes) -> bytes:
    """Encrypt an encoded part for the task of ``system`` in ``request_id``."""
    sink = _Sealed()
    with EncryptedWriter(sink, _key(settings), _context(request_id, system)) as writer:
        writer.write(encoded)
    return bytes(sink.value)


def open_part(settings: Settings, request_id: uuid.UUID, system: str, sealed: bytes) -> Any:
    """The part sealed by :func:`seal_part`, decoded.

    Raises:
        ArtifactCorrupted: the bytes were altered or belong to another task.
    """
    plain = b"".join(read_frames(io.BytesIO(sealed), _key(settings), _context(request_id, system)))
    return msgspec.json.decode(plain)


async def external_sections(
    session: AsyncSession, settings: Settings, request_id: uuid.UUID
) -> list[ExternalSection]:
    """The export sections of the request's completed external tasks, by system name."""
    tasks = (
        await session.scalars(
            select(ExternalTask)
            .where(ExternalTask.request_id == request_id, ExternalTask.status == "completed")
            .order_by(ExternalTask.system)
        )
    ).all()
    sections = []
    for task in tasks:
        declared = await external_at(session, task.system, task.manifest_version)
        metadata = {
            "kind": "external",
            "purpose": declared.purpose if declared else None,
            "legal_basis": declared.legal_basis if declared else None,
            "categories": list(declared.categories) if declared else [],
            "recipients": list(declared.recipients) if declared else [],
        }
        data = open_part(settings, request_id, task.system, task.export_part) if task.export_part else None
        sections.append(
            ExternalSection(
                system=task.system,
                manifest_version=task.manifest_version,
                metadata=metadata,
                counts=dict(task.counts),
                data=data,
            )
        )
    return sections


async def clear_parts(session: AsyncSession, request_id: uuid.UUID) -> None:
    """Delete the request's stored parts (its export is assembled, or it ended otherwise)."""
    await session.execute(
        update(ExternalTask)
        .where(ExternalTask.request_id == request_id, ExternalTask.export_part.is_not(None))
        .values(export_part=None)
        .execution_options(synchronize_session=False)
    )
