"""Registering, reading and re-validating manifests; loading ``LETHE_MANIFESTS_DIR``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advanced_alchemy.exceptions import DuplicateKeyError, IntegrityError
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.manifests import ManifestVersion
from app.domain.audit.services import append
from app.engine.targets import TargetRegistry
from app.lib.clock import utcnow
from app.lib.errors import ConfigurationError, Conflict, LetheError, NotFound
from app.lib.logging import get_logger
from app.manifest.external import ExternalSystem, load_any
from app.manifest.graph import SubjectGraph
from app.manifest.issues import Issue, raise_for_errors, strict
from app.manifest.lint import lint
from app.manifest.loading import content_hash, dump_manifest, load_manifest
from app.manifest.model import Manifest
from app.manifest.schema import SchemaInfo
from app.manifest.validation import validate

__all__ = (
    "LiveCheck",
    "ManifestService",
    "check_live",
    "register_directory",
    "register_manifest",
)

logger = get_logger("lethe.manifests")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_VERSION = 2**31 - 1
"""Largest version number the store's integer column holds."""


@dataclass
class LiveCheck:
    """A manifest checked against its live target: the graph (None on errors) and every issue."""

    graph: SubjectGraph | None
    issues: list[Issue] = field(default_factory=list)
    identity_columns: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of(self, severity: str) -> list[Issue]:
        """Issues of one severity (``error``, ``risk``, ``finding``)."""
        return [i for i in self.issues if i.severity == severity]

    def notice(self) -> str | None:
        """One line saying what the manifest leaves uncovered (None when nothing): findings do
        not block registration, so the answer must not let them pass unread."""
        open_findings = [i for i in self.of("finding") if not i.acknowledged]
        parts: list[str] = []
        if open_findings:
            named = ", ".join(
                f"{i.table}.{i.column}" if i.column else str(i.table) for i in open_findings[:5]
            )
            more = f" and {len(open_findings) - 5} more" if len(open_findings) > 5 else ""
            parts.append(
                f"{len(open_findings)} personal-looking column(s) or table(s) are not covered by the "
                f"manifest ({named}{more}): their data survives erasure; cover them, acknowledge them "
                "under `ignore:`, or set LETHE_MANIFEST_STRICT=true to refuse such manifests"
            )
        risks = self.of("risk")
        if risks:
            parts.append(f"{len(risks)} risk(s) reported, see `risks`")
        return "; ".join(parts) or None


async def check_live(manifest: Manifest, targets: TargetRegistry, *, strict_mode: bool = False) -> LiveCheck:
    """Reflect the target and run validation and the completeness lint.

    In ``strict_mode`` unacknowledged lint findings are errors (see :func:`strict`).

    Raises:
        TargetUnavailable: the target cannot be reached (503 naming the system).
    """
    schema, proof = await targets.reflect_and_prove(manifest)
    graph, issues = validate(manifest, schema)
    issues += proof
    issues += lint(manifest, schema)
    return LiveCheck(graph, strict(issues) if strict_mode else issues, _identity_columns(manifest, schema))


def _identity_columns(manifest: Manifest, schema: SchemaInfo) -> dict[str, dict[str, Any]]:
    """The reflected type of each identity's column, for checking request identities at the API."""
    table = schema.tables.get(manifest.subject.table)
    found: dict[str, dict[str, Any]] = {}
    for name in manifest.subject.identities:
        column = table.columns.get(manifest.subject.identity(name).column) if table else None
        if column is not None:
            found[name] = {
                "affinity": column.affinity,
                "type_name": column.type_name,
                "length": column.length,
            }
    return found


class ManifestService(SQLAlchemyAsyncRepositoryService[ManifestVersion]):
    """Manifest versions in the service store; rows are inserted, never updated."""

    class Repo(SQLAlchemyAsyncRepository[ManifestVersion]):
        """Repository of manifest versions."""

        model_type = ManifestVersion

    repository_type = Repo

    async def latest(self, system: str) -> ManifestVersion | None:
        """The newest version of ``system``, or None when it was never registered."""
        statement = (
            select(ManifestVersion)
            .where(ManifestVersion.system == system)
            .order_by(ManifestVersion.version.desc())
            .limit(1)
        )
        found: ManifestVersion | None = (
            await self.repository.session.execute(statement)
        ).scalar_one_or_none()
        return found

    async def get_version(self, system: str, version: int | None = None) -> ManifestVersion:
        """Version ``version`` of ``system`` (the latest when None).

        Raises:
            NotFound: no such system or version.
        """
        if version is None:
            found = await self.latest(system)
        elif not 1 <= version <= MAX_VERSION:  # beyond the column's range: no such version
            found = None
        else:
            found = await self.repository.session.get(ManifestVersion, (system, version))
        if found is None:
            what = f"version {version} of system '{system}'" if version else f"system '{system}'"
            raise NotFound(f"no manifest is registered for {what}")
        return found

    async def current(self, system: str, version: int | None = None) -> tuple[ManifestVersion, Manifest]:
        """A registered version and its decoded manifest (what request execution runs on).

        Raises:
            NotFound: no such system or version.
        """
        row = await self.get_version(system, version)
        return row, load_manifest_document(row)

    async def list_latest(self, after: str | None, limit: int) -> list[ManifestVersion]:
        """The latest version of each system, ordered by system, after the ``after`` system."""
        newest = (
            select(ManifestVersion.system, func.max(ManifestVersion.version).label("version"))
            .group_by(ManifestVersion.system)
            .subquery()
        )
        statement = (
            select(ManifestVersion)
            .join(
                newest,
                (ManifestVersion.system == newest.c.system) & (ManifestVersion.version == newest.c.version),
            )
            .order_by(ManifestVersion.system)
            .limit(limit)
        )
        if after is not None:
            statement = statement.where(ManifestVersion.system > after)
        return list((await self.repository.session.execute(statement)).scalars())

    async def store(
        self,
        manifest: Manifest | ExternalSystem,
        created_by: str,
        identity_columns: dict[str, dict[str, Any]] | None = None,
    ) -> tuple[ManifestVersion, bool]:
        """Insert a new version unless the latest one has the same content.

        Raises:
            Conflict: a concurrent registration of the same system took this version number.
        """
        digest = content_hash(manifest)
        latest = await self.latest(manifest.system)
        if latest is not None and latest.content_hash == digest:
            return latest, False
        row = ManifestVersion(
            system=manifest.system,
            version=1 if latest is None else latest.version + 1,
            content_hash=digest,
            document=dump_manifest(manifest),
            created_at=utcnow(),
            created_by=created_by,
            identity_columns=identity_columns or None,
        )
        try:
            await self.repository.add(row)
        except (DuplicateKeyError, IntegrityError) as error:
            raise Conflict(
                f"another registration of system '{manifest.system}' happened at the same time; retry"
            ) from error
        await _audit_registration(self.repository.session, actor=created_by, row=row)
        return row, True


def load_manifest_document(row: ManifestVersion) -> Manifest:
    """Decode a stored version back into a :class:`Manifest`."""
    return load_manifest(json.dumps(row.document), "json")


async def _audit_registration(session: AsyncSession, *, actor: str, row: ManifestVersion) -> None:
    """The single place where a registration is audited (action ``manifest.registered``).

    Called in the registering transaction right after the new version is inserted, so the
    version and its audit event commit together. The payload is the version, content hash and
    number of tables: nothing personal.
    """
    await append(
        session,
        action="manifest.registered",
        actor=actor,
        system=row.system,
        payload={
            "version": row.version,
            "content_hash": row.content_hash,
            "tables": len(row.document.get("tables", {})),
            **_retention_overrides(row.document),
        },
    )
    logger.info(
        "manifest registered",
        system=row.system,
        version=row.version,
        content_hash=row.content_hash,
    )


def _retention_overrides(document: dict[str, Any]) -> dict[str, Any]:
    """Names of the retention policies allowed to purge sooner than a declared retention, for
    the registration's audit event (their reasons stay in the immutable version it names by
    content hash: audit payloads hold identifiers only)."""
    names = [str(p["name"]) for p in document.get("retention_policies", ()) if p.get("retention_override")]
    return {"retention_overrides": names} if names else {}


async def register_manifest(
    service: ManifestService,
    manifest: Manifest | ExternalSystem,
    targets: TargetRegistry,
    created_by: str,
    *,
    strict_mode: bool = False,
) -> tuple[ManifestVersion, bool, LiveCheck]:
    """Validate ``manifest`` against its live target, then store it as a new version (an
    external system, having no target, is stored as it is).

    Returns the stored (or unchanged latest) version, whether it was created, and the check
    (risks and lint findings are reported but do not block registration, except that in
    ``strict_mode`` unacknowledged findings are errors).

    Raises:
        ManifestInvalid: validation found errors (422 with each key path).
        TargetUnavailable: the target cannot be reached (503).
    """
    if isinstance(manifest, ExternalSystem):  # no database: nothing to reflect
        row, created = await service.store(manifest, created_by)
        return row, created, LiveCheck(None)
    check = await check_live(manifest, targets, strict_mode=strict_mode)
    raise_for_errors(check.issues)
    row, created = await service.store(manifest, created_by, check.identity_columns)
    targets.reflections.forget(manifest.system)  # the schema was just looked at anew
    return row, created, check


async def register_directory(
    engine: AsyncEngine, directory: Path, created_by: str = "manifests-dir"
) -> list[tuple[str, int, bool]]:
    """Register every manifest file of ``directory`` (structure checked; targets may be down).

    Unchanged files create no new version. Returns ``(system, version, created)`` per file.

    Raises:
        ConfigurationError: the directory is missing or a file is not a valid manifest (one line
            naming the file and the key path).
    """
    if not directory.is_dir():
        raise ConfigurationError(f"LETHE_MANIFESTS_DIR: {directory} is not a directory")
    results: list[tuple[str, int, bool]] = []
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    for path in sorted(p for p in directory.iterdir() if p.suffix.lower() in MANIFEST_SUFFIXES):
        try:
            manifest = load_any(path.read_bytes(), "json" if path.suffix.lower() == ".json" else "yaml")
        except LetheError as error:
            raise ConfigurationError(f"LETHE_MANIFESTS_DIR: {path.name}: {error.detail}") from error
        async with sessions() as session, session.begin():
            row, created = await ManifestService(session=session).store(manifest, created_by)
            results.append((row.system, row.version, created))
        logger.info(
            "manifest file loaded",
            file=path.name,
            system=row.system,
            version=row.version,
            created=created,
        )
    return results
