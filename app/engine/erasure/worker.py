"""The request worker's erasure handler: plan once, hand the plan and the reflection to execution."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from app.engine.erasure.execute import execute_erasure
from app.engine.erasure.model import ErasureBlocked, ErasureOptions, SystemPlan, plan_document
from app.engine.erasure.plan import plan_erasure
from app.engine.runs import RequestFailed, RequestOutcome, RequestRun, SystemOutcome, SystemRun
from app.engine.schema_info import Reflection
from app.engine.subjects import subject_key_reference

__all__ = ("run_erasure",)


def _options(run: RequestRun) -> ErasureOptions:
    settings = run.settings
    return ErasureOptions(
        secret=settings.audit_key,
        batch_threshold=settings.erasure_batch_threshold,
        batch_size=settings.erasure_batch_size,
        tenant=run.tenant,
        batch_delay_seconds=settings.erasure_batch_delay_seconds,
    )


async def _plan_only(run: RequestRun, system: SystemRun, target: AsyncEngine) -> None:
    async with target.connect() as conn:
        reflection = await run.reflection(conn, system)
        plan = await plan_erasure(conn, system.manifest, run.identities, _options(run), reflection=reflection)
    await run.progress.record_plan(system.system, plan_document(plan))
    outcome = SystemOutcome(
        not_found=not plan.found,
        counts={t.table: t.rows for t in plan.tables},
        audit={"dry_run": True, "rows": plan.rows, "blocked": plan.blocked is not None},
    )
    await run.progress.complete_system(system.system, outcome, action="erasure.planned")


async def _erase_system(run: RequestRun, system: SystemRun, target: AsyncEngine) -> dict[str, int]:
    options = _options(run)
    secret = options.secret or ""
    manifest = system.manifest
    cursor = system.cursor
    reference = str(cursor["subject_key_ref"]) if cursor and "subject_key_ref" in cursor else None
    plan: SystemPlan | None = None
    reflection: Reflection | None = None
    if cursor is None:
        # Every erasure executes its plan: a subject erased before (a tombstone exists) whose rows
        # came back from a backup or a re-import is erased again; one with nothing left is a no-op.
        # The target is reflected once (or its cached reflection checked against the catalog);
        # execution reuses that reflection and the plan's counts.
        async with target.connect() as conn:
            reflection = await run.reflection(conn, system)
            plan = await plan_erasure(conn, manifest, run.identities, options, reflection=reflection)
        await run.progress.record_plan(system.system, plan_document(plan))

    async def save(state: dict[str, Any]) -> None:
        state["subject_key_ref"] = reference
        counts = {**state.get("deleted", {}), **state.get("anonymized", {})}
        await run.progress.save_cursor(system.system, state, counts)

    outcome = await execute_erasure(
        target,
        manifest,
        run.identities,
        options,
        cursor=cursor,
        save_cursor=save,
        reflection=reflection,
        plan=plan,
    )
    if outcome.subject_key is not None:
        reference = subject_key_reference(secret, system.system, outcome.subject_key)
    found = outcome.found or reference is not None
    counts = {**outcome.deleted, **outcome.anonymized}
    result = SystemOutcome(
        not_found=not found,
        counts=counts,
        audit=outcome.audit_payload(),
        tombstones=[reference] if found and reference is not None else [],
        subject_key_ref=reference,
    )
    await run.progress.complete_system(system.system, result, action="erasure.system_completed")
    return counts


async def run_erasure(run: RequestRun) -> RequestOutcome:
    """The worker's erasure handler: per system, plan (dry run) or erase, tombstone, complete.

    Systems already completed by an earlier attempt are skipped; a system with a saved cursor
    resumes at its next batch. An outside reference or a refused constraint fails the request
    naming the system (that system's transaction rolled back; earlier systems stay erased).
    """
    totals: dict[str, int] = {}
    for system in run.systems:
        if system.status == "completed":
            continue
        target = await run.targets(system.system, system.manifest)
        try:
            if run.dry_run:
                await _plan_only(run, system, target)
                continue
            counts = await _erase_system(run, system, target)
        except ErasureBlocked as exc:
            raise RequestFailed(exc.detail, system=system.system) from exc
        totals[system.system] = sum(counts.values())
    return RequestOutcome(audit={"dry_run": run.dry_run, "rows": sum(totals.values())})
