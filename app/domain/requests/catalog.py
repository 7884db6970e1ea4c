"""The registered manifests a request runs on: the newest versions now, a recorded version later."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.manifests import ManifestVersion
from app.lib.errors import NotFound
from app.manifest.external import ExternalSystem, is_external, load_external
from app.manifest.loading import load_manifest
from app.manifest.model import Manifest

__all__ = (
    "RegisteredManifest",
    "VersionRow",
    "current_manifests",
    "database_manifests",
    "manifest_at",
    "newest_versions",
)

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


def _decode(row: ManifestVersion | VersionRow) -> Manifest:
    key = (row.system, row.version, row.content_hash)
    if key not in _CACHE:
        _CACHE[key] = load_manifest(msgspec.json.encode(row.document), "json")
    return _CACHE[key]


@dataclass(frozen=True)
class VersionRow:
    """The stored columns of one registered version a request needs (versions never change)."""

    system: str
    version: int
    content_hash: str
    document: Mapping[str, Any]
    identity_columns: Mapping[str, Mapping[str, Any]] | None


_ROWS: dict[tuple[str, str, int, str, object], VersionRow] = {}
"""Registered versions by (store, system, version, content hash, registration time): a lookup of
the newest versions reads only these key columns and loads a document once per process; a new
registration (here or on another replica) shows up as a new key."""


_NEWEST = (
    select(ManifestVersion.system, func.max(ManifestVersion.version).label("version"))
    .group_by(ManifestVersion.system)
    .subquery()
)
_IS_NEWEST = (ManifestVersion.system == _NEWEST.c.system) & (ManifestVersion.version == _NEWEST.c.version)
_NEWEST_KEYS = (
    select(
        ManifestVersion.system,
        ManifestVersion.version,
        ManifestVersion.content_hash,
        ManifestVersion.created_at,
    )
    .join(_NEWEST, _IS_NEWEST)
    .order_by(ManifestVersion.system)
)
_NEWEST_ROWS = select(ManifestVersion).join(_NEWEST, _IS_NEWEST)


async def newest_versions(session: AsyncSession) -> list[VersionRow]:
    """The newest version of every registered system (database and external), by system."""
    store = session.get_bind().engine.url.render_as_string(hide_password=True)
    keys = [
        (store, row.system, row.version, row.content_hash, row.created_at)
        for row in await session.execute(_NEWEST_KEYS)
    ]
    missing = [key for key in keys if key not in _ROWS]
    if missing:
        wanted = {(key[1], key[2]) for key in missing}
        for row in await session.scalars(_NEWEST_ROWS):
            if (row.system, row.version) in wanted:
                key = (store, row.system, row.version, row.content_hash, row.created_at)
                _ROWS[key] = VersionRow(
                    row.system, row.version, row.content_hash, row.document, row.identity_columns
                )
    return [_ROWS[key] for key in keys if key in _ROWS]


async def current_manifests(session: AsyncSession) -> dict[str, RegisteredManifest]:
    """The newest version of every registered database system, by system name."""
    return database_manifests(await newest_versions(session))


def database_manifests(rows: Sequence[VersionRow]) -> dict[str, RegisteredManifest]:
    """The database systems among ``rows`` (from :func:`newest_versions`), by system name."""
    return {
        row.system: RegisteredManifest(row.system, row.version, _decode(row), row.identity_columns)
        for row in rows
        if not is_external(row.document)  # external systems: app.domain.external.tasks
    }


async def manifest_at(session: AsyncSession, system: str, version: int) -> Manifest:
    """The manifest of ``system`` at the version a request recorded.

    Raises:
        NotFound: that version is not in the registry (it never is deleted, so: a broken store).
    """
    content_hash = await session.scalar(
        select(ManifestVersion.content_hash).where(
            ManifestVersion.system == system, ManifestVersion.version == version
        )
    )
    if content_hash is None:
        raise NotFound(f"manifest version {version} of system '{system}' is not registered")
    decoded = _CACHE.get((system, version, content_hash))
    if decoded is not None:  # the document is read once per process, its hash every time
        return decoded
    row = await session.get(ManifestVersion, (system, version))
    if row is None:
        raise NotFound(f"manifest version {version} of system '{system}' is not registered")
    return _decode(row)


async def external_at(session: AsyncSession, system: str, version: int) -> ExternalSystem | None:
    """The declaration of external ``system`` at the version its task recorded (``None``: that
    version is not in the registry, which never deletes one, so a broken store)."""
    row = await session.get(ManifestVersion, (system, version))
    return load_external(row.document) if row is not None else None
