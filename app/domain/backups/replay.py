"""The replay of erasures after a restore: subjects tombstoned since a moment that the restored
target holds again are found by the HMAC of their key and erased again through the erasure engine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.config import Settings
from app.domain.audit.links import canonical_time
from app.domain.audit.services import append
from app.domain.backups.services import tombstone_refs
from app.domain.manifests.services import ManifestService
from app.engine.erasure import ErasureOptions, execute_erasure
from app.engine.restore import (
    find_tombstoned_keys,
    key_hasher,
)
from app.engine.targets import TargetRegistry
from app.lib.errors import (
    Unavailable,
)
from app.manifest.model import Identity, Manifest

__all__ = ("ReplayReport", "SubjectEraser", "erasure_engine_eraser", "replay_erasures")

SubjectEraser = Callable[[AsyncEngine, Manifest, tuple[Any, ...]], Awaitable[int]]
"""Erases one subject of a target, found by its key: ``(target engine, manifest, key)`` -> rows
changed. Re-erasing an erased subject must change nothing (0)."""
REPLAY_IDENTITY = "lethe_replay_key_"


# --- erasure replay ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ReplayReport:
    """What a replay did: tombstones considered, subjects found in the target, rows changed."""

    system: str
    since: datetime
    tombstones: int
    subjects_found: int
    rows_changed: int


def _keyed(manifest: Manifest) -> tuple[Manifest, list[str]]:
    """The manifest with one extra identity per subject key column, so the erasure engine (which
    finds subjects by identity) can be pointed at a key found by its HMAC. The identities carry
    no tenant scope: the key alone names the subject."""
    names = [f"{REPLAY_IDENTITY}{index}" for index in range(len(manifest.subject.key_columns))]
    extra = {
        name: Identity(column=column, match="exact")
        for name, column in zip(names, manifest.subject.key_columns, strict=True)
    }
    subject = msgspec.structs.replace(manifest.subject, identities={**manifest.subject.identities, **extra})
    return msgspec.structs.replace(manifest, subject=subject), names


def erasure_engine_eraser(settings: Settings) -> SubjectEraser:
    """Erasure of one subject by key through the erasure engine (plan, execute, verify).

    Returns the rows the engine deleted or anonymized; a subject already gone is a no-op (0).
    """
    options = ErasureOptions(
        secret=settings.audit_key,
        batch_threshold=settings.erasure_batch_threshold,
        batch_size=settings.erasure_batch_size,
    )

    async def erase(target: AsyncEngine, manifest: Manifest, key: tuple[Any, ...]) -> int:
        keyed, names = _keyed(manifest)
        identities = {name: str(value) for name, value in zip(names, key, strict=True)}
        outcome = await execute_erasure(target, keyed, identities, options)
        return sum(outcome.deleted.values()) + sum(outcome.anonymized.values())

    return erase


async def replay_erasures(
    session: AsyncSession,
    settings: Settings,
    targets: TargetRegistry,
    *,
    system: str,
    since: datetime,
    actor: str,
    eraser: SubjectEraser | None = None,
) -> ReplayReport:
    """Re-apply the erasure of every subject tombstoned since ``since`` that a restore brought back.

    The target holds the subject's key, the store only its HMAC: every key of the subject table
    is hashed and matched against the tombstones, then each match is erased again through the
    erasure engine. Idempotent: a second run finds nothing left to erase (or erases 0 rows).
    Each re-erased subject is audited under its pseudonymous reference, then a summary event.
    ``eraser`` defaults to :func:`erasure_engine_eraser`.
    """
    erase = eraser or erasure_engine_eraser(settings)
    audit_key = settings.audit_key
    if not audit_key:
        raise Unavailable("LETHE_AUDIT_KEY is not configured")
    _, manifest = await ManifestService(session=session).current(system)
    refs = await tombstone_refs(session, system, since)
    target = await targets.engine(system, manifest.connection)
    async with targets.connect(system, manifest.connection) as connection:
        matches = await find_tombstoned_keys(
            connection,
            manifest.subject.table,
            manifest.subject.key_columns,
            refs,
            key_hasher(audit_key, system),
        )
    changed = 0
    for ref, key in matches:
        rows = await erase(target, manifest, key)
        changed += rows
        await append(
            session,
            action="backup.erasure_replayed",
            actor=actor,
            system=system,
            subject_ref=ref,
            payload={"rows_changed": rows},
        )
    await append(
        session,
        action="backup.erasures_replayed",
        actor=actor,
        system=system,
        payload={
            "since": canonical_time(since),
            "tombstones": len(refs),
            "subjects_found": len(matches),
            "rows_changed": changed,
        },
    )
    return ReplayReport(
        system=system, since=since, tombstones=len(refs), subjects_found=len(matches), rows_changed=changed
    )
