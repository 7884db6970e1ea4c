"""Retention policies: synced from manifests or written over the API, checked on the live target."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.manifests import ManifestVersion
from app.db.retention import RetentionPolicyRecord, RetentionRun
from app.domain.audit.services import append
from app.domain.manifests.services import ManifestService, load_manifest_document
from app.engine.retention import (
    PolicyFilter,
    PurgePolicy,
    SurrogateRule,
    check_policy_shape,
    prepare_purge,
)
from app.engine.targets import TargetRegistry
from app.lib.clock import utcnow
from app.lib.errors import Conflict, NotFound, ValidationFailed, field_error
from app.lib.logging import get_logger
from app.manifest.durations import Duration, parse_duration
from app.manifest.external import is_external
from app.manifest.model import ColumnSpec, Manifest, RetentionPolicy, Surrogate
from app.manifest.names import manifest_schemas

__all__ = (
    "apply_patch",
    "check_on_target",
    "create_policy",
    "delete_policy",
    "get_policy",
    "latest_manifest",
    "list_policies",
    "list_runs",
    "next_window",
    "purge_policy",
    "sync_manifest_policies",
)

logger = get_logger("lethe.retention")
SOURCE_MANIFEST = "manifest"
SOURCE_API = "api"
_EDITABLE = (
    "table_name",
    "age_column",
    "older_than",
    "action",
    "soft_delete_column",
    "filters",
    "batch_size",
    "schedule",
    "enabled",
)


def next_window(schedule: str, moment: datetime) -> datetime:
    """The start of the window after ``moment`` for an ISO 8601 interval (calendar-aware)."""
    step = parse_duration(schedule)
    return Duration(years=-step.years, months=-step.months, exact=-step.exact).before(moment)


# --- manifest side -------------------------------------------------------------------------


def _surrogate_spec(column: ColumnSpec) -> Surrogate | None:
    """The erasure surrogate of a manifest column (``delete`` columns become NULL)."""
    if column.strategy == "delete":
        return Surrogate(kind="null")
    return column.surrogate_spec


def purge_policy(
    record: RetentionPolicyRecord, manifest: Manifest, *, secret: str | None = None
) -> PurgePolicy:
    """The engine's view of a stored policy; anonymize takes the manifest's personal columns
    with the surrogates erasure writes (``secret`` keys ``hash``, as in erasure)."""
    table = manifest.tables.get(record.table_name)
    surrogates = {}
    if table is not None:
        surrogates = {
            name: SurrogateRule(_surrogate_spec(column))
            for name, column in table.columns.items()
            if column.strategy != "retain"
        }
    return PurgePolicy(
        system=record.system,
        table=record.table_name,
        age_column=record.age_column or None,
        older_than=record.older_than,
        action=record.action,
        soft_delete_column=record.soft_delete_column,
        filters=tuple(
            PolicyFilter(f["column"], f["op"], tuple(v) if isinstance(v := f.get("value"), list) else v)
            for f in record.filters
        ),
        batch_size=record.batch_size,
        surrogates=surrogates,
        secret=secret,
        schemas=manifest_schemas(manifest),
    )


async def latest_manifest(session: AsyncSession, system: str) -> tuple[int, Manifest]:
    """The newest registered manifest of ``system`` (policies run against its connection).

    Raises:
        ValidationFailed: no manifest is registered for ``system``.
    """
    row = await ManifestService(session=session).latest(system)
    if row is None:
        raise ValidationFailed(
            f"system '{system}' has no registered manifest",
            [field_error("system", "register the system's manifest first")],
        )
    return row.version, load_manifest_document(row)


async def check_on_target(targets: TargetRegistry, manifest: Manifest, policy: PurgePolicy) -> None:
    """Refuse a policy the live table cannot honour (reflection; 422 naming the field).

    Raises:
        ValidationFailed: see :func:`app.engine.retention.prepare_purge`.
        TargetUnavailable: the target cannot be reached (503).
    """
    check_policy_shape(policy)
    async with targets.connect(manifest.system, manifest.connection) as connection:
        await prepare_purge(connection, policy)


def _manifest_fields(spec: RetentionPolicy, version: int, now: datetime) -> dict[str, Any]:
    return {
        "manifest_version": version,
        "table_name": spec.table,
        "age_column": spec.age_column,
        "older_than": spec.older_than,
        "action": spec.action,
        "soft_delete_column": spec.soft_delete_column,
        "filters": [_filter_dict(f.column, f.op, f.value) for f in spec.filters],
        "batch_size": spec.batch_size,
        "schedule": spec.schedule,
        "enabled": spec.enabled,
        "updated_at": now,
    }


def _filter_dict(column: str, op: str, value: Any) -> dict[str, Any]:
    return {"column": column, "op": op, "value": list(value) if isinstance(value, tuple | list) else value}


async def _latest_rows(session: AsyncSession) -> list[ManifestVersion]:
    rows: list[ManifestVersion] = []
    after: str | None = None
    service = ManifestService(session=session)
    while batch := await service.list_latest(after, 200):
        rows.extend(batch)
        after = batch[-1].system
    return rows


async def sync_manifest_policies(session: AsyncSession) -> int:
    """Bring manifest-sourced policies in step with each system's latest manifest version.

    New policies are added, changed ones updated (their schedule window restarts), and those the
    manifest no longer declares removed (their runs stay, detached). An API policy of the same
    name wins and the manifest's is skipped with a warning. Returns how many rows changed.
    """
    now = utcnow()
    stored = {(p.system, p.name): p for p in (await session.scalars(select(RetentionPolicyRecord))).all()}
    changed = 0
    for row in await _latest_rows(session):
        if is_external(row.document):  # no database, no retention policies
            continue
        manifest = load_manifest_document(row)
        declared = {spec.name for spec in manifest.retention_policies}
        for spec in manifest.retention_policies:
            changed += _sync_one(session, stored.get((row.system, spec.name)), spec, row, now)
        for (system, name), record in stored.items():
            if system == row.system and record.source == SOURCE_MANIFEST and name not in declared:
                await session.delete(record)
                changed += 1
    if changed:
        try:
            await session.flush()
        except IntegrityError:  # another replica synced the same version at the same time
            await session.rollback()
            return 0
    return changed


def _sync_one(
    session: AsyncSession,
    record: RetentionPolicyRecord | None,
    spec: RetentionPolicy,
    row: ManifestVersion,
    now: datetime,
) -> int:
    fields = _manifest_fields(spec, row.version, now)
    if record is None:
        session.add(
            RetentionPolicyRecord(
                id=uuid.uuid4(),
                system=row.system,
                name=spec.name,
                source=SOURCE_MANIFEST,
                created_at=now,
                next_due_at=now if spec.schedule else None,
                **fields,
            )
        )
        return 1
    if record.source != SOURCE_MANIFEST:
        logger.warning("manifest retention policy shadowed by an API policy", system=row.system)
        return 0
    if record.manifest_version == row.version:
        return 0
    if record.schedule != spec.schedule:
        record.next_due_at = now if spec.schedule else None
    for name, value in fields.items():
        setattr(record, name, value)
    return 1


# --- API side ------------------------------------------------------------------------------


async def get_policy(session: AsyncSession, policy_id: uuid.UUID) -> RetentionPolicyRecord:
    """One policy.

    Raises:
        NotFound: no such policy.
    """
    record = await session.get(RetentionPolicyRecord, policy_id)
    if record is None:
        raise NotFound(f"no retention policy {policy_id}")
    return record


async def create_policy(
    session: AsyncSession, targets: TargetRegistry, fields: dict[str, Any], actor: str
) -> RetentionPolicyRecord:
    """Store a policy written over the API after checking it on the live target.

    Raises:
        ValidationFailed: the policy cannot be honoured (field and reason named).
        Conflict: the system already has a policy of that name.
        TargetUnavailable: the target cannot be reached.
    """
    _check_schedule(fields.get("schedule"))
    now = utcnow()
    record = RetentionPolicyRecord(
        id=uuid.uuid4(),
        source=SOURCE_API,
        manifest_version=None,
        created_at=now,
        updated_at=now,
        next_due_at=now if fields.get("schedule") else None,
        **fields,
    )
    _, manifest = await latest_manifest(session, record.system)
    await check_on_target(targets, manifest, purge_policy(record, manifest, secret=targets.surrogate_secret))
    taken = await session.scalar(
        select(RetentionPolicyRecord.id).where(
            RetentionPolicyRecord.system == record.system, RetentionPolicyRecord.name == record.name
        )
    )
    if taken is not None:
        raise Conflict(f"system '{record.system}' already has a retention policy named '{record.name}'")
    session.add(record)
    await session.flush()
    await _audit_change(session, "retention.policy_created", record, actor)
    return record


def _check_schedule(schedule: str | None) -> None:
    """A schedule is an ISO 8601 duration of at most :data:`MAX_YEARS` years (422 naming it)."""
    if schedule is None:
        return
    try:
        parse_duration(schedule)
    except ValueError as exc:
        raise ValidationFailed(f"schedule: {exc}", [field_error("body.schedule", str(exc))]) from exc


def _editable(record: RetentionPolicyRecord) -> None:
    if record.source == SOURCE_MANIFEST:
        raise Conflict(
            f"retention policy '{record.name}' comes from the manifest of system '{record.system}'; "
            "change it there and register the manifest"
        )


async def apply_patch(
    session: AsyncSession,
    targets: TargetRegistry,
    policy_id: uuid.UUID,
    changes: dict[str, Any],
    actor: str,
) -> RetentionPolicyRecord:
    """Change an API policy; the result is checked on the live target before it is kept.

    Raises:
        NotFound: no such policy. Conflict: the policy comes from a manifest.
        ValidationFailed: the changed policy cannot be honoured.
    """
    record = await get_policy(session, policy_id)
    _editable(record)
    unknown = set(changes) - set(_EDITABLE)
    if unknown:
        raise ValidationFailed("unknown fields", [field_error(f, "not editable") for f in unknown])
    _check_schedule(changes.get("schedule"))
    if "schedule" in changes and changes["schedule"] != record.schedule:
        record.next_due_at = utcnow() if changes["schedule"] else None
    for name, value in changes.items():
        setattr(record, name, value)
    record.updated_at = utcnow()
    _, manifest = await latest_manifest(session, record.system)
    await check_on_target(targets, manifest, purge_policy(record, manifest, secret=targets.surrogate_secret))
    await session.flush()
    await _audit_change(session, "retention.policy_updated", record, actor)
    return record


async def delete_policy(session: AsyncSession, policy_id: uuid.UUID, actor: str) -> None:
    """Remove an API policy (its runs stay in the history).

    Raises:
        NotFound: no such policy. Conflict: the policy comes from a manifest.
    """
    record = await get_policy(session, policy_id)
    _editable(record)
    await _audit_change(session, "retention.policy_deleted", record, actor)
    await session.execute(delete(RetentionPolicyRecord).where(RetentionPolicyRecord.id == policy_id))


async def _audit_change(
    session: AsyncSession, action: str, record: RetentionPolicyRecord, actor: str
) -> None:
    await append(
        session,
        action=action,
        actor=actor,
        system=record.system,
        payload={
            "policy": str(record.id),
            "name": record.name,
            "table": record.table_name,
            "action": record.action,
            "enabled": record.enabled,
        },
    )


async def list_policies(
    session: AsyncSession, after: Sequence[Any] | None, limit: int, system: str | None = None
) -> list[RetentionPolicyRecord]:
    """Policies ordered by system and name, after the ``(system, name)`` cursor."""
    statement = select(RetentionPolicyRecord).order_by(
        RetentionPolicyRecord.system, RetentionPolicyRecord.name
    )
    if system is not None:
        statement = statement.where(RetentionPolicyRecord.system == system)
    if after is not None:
        last_system, last_name = str(after[0]), str(after[1])
        statement = statement.where(
            or_(
                RetentionPolicyRecord.system > last_system,
                and_(RetentionPolicyRecord.system == last_system, RetentionPolicyRecord.name > last_name),
            )
        )
    return list((await session.scalars(statement.limit(limit))).all())


async def list_runs(
    session: AsyncSession,
    after: Sequence[Any] | None,
    limit: int,
    policy_id: uuid.UUID | None = None,
    status: str | None = None,
) -> list[RetentionRun]:
    """Runs, newest first, after the ``(started_at, id)`` cursor."""
    statement = select(RetentionRun).order_by(RetentionRun.started_at.desc(), RetentionRun.id.desc())
    if policy_id is not None:
        statement = statement.where(RetentionRun.policy_id == policy_id)
    if status is not None:
        statement = statement.where(RetentionRun.status == status)
    if after is not None:
        started = datetime.fromisoformat(str(after[0]))
        last_id = uuid.UUID(str(after[1]))
        statement = statement.where(
            or_(
                RetentionRun.started_at < started,
                and_(RetentionRun.started_at == started, RetentionRun.id < last_id),
            )
        )
    return list((await session.scalars(statement.limit(limit))).all())
