"""The registered manifests a request runs on: the newest versions now, a recorded version later."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.manifests import ManifestVersion
from app.lib.errors import NotFound
from app.manifest.external import is_external
from app.manifest.loading import load_manifest
from app.manifest.model import Manifest

__all__ = ("RegisteredManifest", "current_manifests", "manifest_at", "newest_versions")

_CACHE: dict[tuple[str, int, str], Manifest] = {}
"""Versions are immutable, so a decoded manifest is kept for the life of the process (keyed by
content hash too, so two stores of one process, as in tests, never share an entry)."""


@dataclass(frozen=True)
class RegisteredManifest:
    """One system's manifest at one registered version."""

    system: str
    version: int
    manifest: Manifest
    identity_columns: Mapping[str, Mapping[str, Any]] | None = None
    """Reflected type of each identity's column when the version was validated live."""


def _decode(row: ManifestVersion) -> Manifest:
    key = (row.system, row.version, row.content_hash)
    if key not in _CACHE:
        _CACHE[key] = load_manifest(msgspec.json.encode(row.document), "json")
    return _CACHE[key]


async def newest_versions(session: AsyncSession) -> list[ManifestVersion]:
    """The newest version row of every registered system (database and external), by system."""
    newest = (
        select(ManifestVersion.system, func.max(ManifestVersion.version).label("version"))
        .group_by(ManifestVersion.system)
        .subquery()
    )
    rows = await session.scalars(
        select(ManifestVersion)
        .join(
            newest,
            (ManifestVersion.system == newest.c.system) & (ManifestVersion.version == newest.c.version),
        )
        .order_by(ManifestVersion.system)
    )
    return list(rows)


async def current_manifests(session: AsyncSession) -> dict[str, RegisteredManifest]:
    """The newest version of every registered database system, by system name."""
    return {
        row.system: RegisteredManifest(row.system, row.version, _decode(row), row.identity_columns)
        for row in await newest_versions(session)
        if not is_external(row.document)  # external systems: app.domain.external.tasks
    }


async def manifest_at(session: AsyncSession, system: str, version: int) -> Manifest:
    """The manifest of ``system`` at the version a request recorded.

    Raises:
        NotFound: that version is not in the registry (it never is deleted, so: a broken store).
    """
    row = await session.get(ManifestVersion, (system, version))
    if row is None:
        raise NotFound(f"manifest version {version} of system '{system}' is not registered")
    return _decode(row)
