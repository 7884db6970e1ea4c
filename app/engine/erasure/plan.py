"""The plan of one system: per table, the strategy, the rows affected and the SQL; reads only."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.erasure.model import ErasureOptions, OutsideReference, SystemPlan, TablePlan
from app.engine.erasure.target import Target, load_target
from app.engine.erasure.work import TableWork, all_work, batchable, count_rows, sizes_of
from app.engine.erasure_sql import display_sql
from app.engine.schema_info import Reflection
from app.engine.scrub import identity_values, plan_scrubs
from app.engine.subjects import Binds, resolve_subject
from app.manifest.model import Manifest

__all__ = (
    "outside_counts",
    "plan_erasure",
)


async def plan_erasure(
    conn: AsyncConnection,
    manifest: Manifest,
    identities: Mapping[str, str],
    options: ErasureOptions,
    *,
    reflection: Reflection | None = None,
) -> SystemPlan:
    """The erasure plan of one subject in one system; reads the target, changes nothing.

    ``reflection`` is the target as already reflected in this run (else it is reflected here).

    Raises:
        ManifestInvalid: the manifest does not fit the target's schema.
        ErasureBlocked: a surrogate cannot honour a column's constraints.
    """
    target = await load_target(conn, manifest, options, reflection)
    subject_table = target.tables[manifest.subject.table]
    key = await resolve_subject(conn, manifest, subject_table, identities, options.tenant)
    plan = SystemPlan(manifest.system, found=key is not None)
    values = await identity_values(conn, subject_table, manifest, key) if key is not None else None
    plan.scrubs = await plan_scrubs(conn, target.tables, manifest, values, target.dialect_obj)
    display = all_work(target, Binds(None))
    executable = all_work(target, Binds(key)) if key is not None else None
    sizes = await sizes_of(conn, target, executable) if executable else {}
    for index, shown in enumerate(display):
        table_plan = _table_plan(target, shown)
        if executable is not None:
            work = executable[index]
            table_plan.rows = sizes[work.table]
            table_plan.batched = table_plan.rows > options.batch_threshold and batchable(target, work.table)
            table_plan.outside_references = await outside_counts(conn, target, work)
        plan.tables.append(table_plan)
    plan.blocked = _blocking(plan)
    return plan


def _table_plan(target: Target, work: TableWork) -> TablePlan:
    spec = target.spec(work.table)
    changed: dict[str, str] = {}
    for link in work.links:
        changed.update({c.column: c.kind for c in link.changes})
    if work.strategy == "delete":
        changed = {}
    retained = [
        c
        for c, s in spec.columns.items()
        if s.strategy == "retain" or (work.strategy == "retain" and c not in changed)
    ]
    retention = spec.retention
    statements = [*work.before, work.main] if work.main is not None else list(work.before)
    return TablePlan(
        table=work.table,
        strategy=work.strategy,
        rows=0,
        links=work.path_descriptions,
        legal_basis=(retention.legal_basis if retention else None) or spec.legal_basis,
        retention=str(retention.duration) if retention else None,
        changed_columns=changed,
        retained_columns=retained if work.strategy != "delete" else [],
        sql=[display_sql(s, target.dialect_obj) for s in statements],
    )


def _blocking(plan: SystemPlan) -> str | None:
    for table in plan.tables:
        for ref in table.outside_references:
            if ref.action == "fail" and ref.rows:
                return (
                    f"foreign key {ref.constraint} from table '{ref.referencing_table}' references "
                    f"{ref.rows} row(s) of '{ref.referenced_table}' that erasure deletes; set "
                    f"on_outside_reference of '{ref.referenced_table}' (set_null, delete, "
                    "anonymize) or manage the referencing table"
                )
    return None


async def outside_counts(conn: AsyncConnection, target: Target, work: TableWork) -> list[OutsideReference]:
    found = []
    for fk, condition, action in work.outside:
        rows = await count_rows(conn, target.tables[fk.table], condition)
        if rows:
            found.append(OutsideReference(fk.label, fk.table, fk.columns, fk.referred_table, rows, action))
    return found
