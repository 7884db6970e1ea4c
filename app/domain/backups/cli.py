"""``lethe backups health | restore-test | replay-erasures``: backups checked from a shell or a cron."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import msgspec
import rich_click as click
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings, get_settings
from app.db.store import create_store_engine
from app.domain.backups import replay, services
from app.domain.backups.controllers import health_out, restore_test_out
from app.domain.backups.schemas import BackupHealthOut, RestoreTestOut
from app.engine.backups import STATUS_ORDER
from app.engine.targets import TargetRegistry
from app.lib.clock import as_utc
from app.lib.errors import ConfigurationError, LetheError

__all__ = ("backups_group",)

T = TypeVar("T")


def _run(work: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    """Run ``work`` in one store transaction (committed when it returns)."""
    settings = get_settings()

    async def _main() -> T:
        engine = create_store_engine(settings)
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
                return await work(session, settings)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(_main())
    except LetheError as exc:
        click.echo(f"lethe backups: {exc.detail}", err=True)
        sys.exit(3)


def _actor(given: str | None) -> str:
    return given or f"cli:{getpass.getuser()}"


def _echo_json(value: object) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def _since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter("an ISO 8601 time, e.g. 2026-11-20T03:00:00Z", param_hint="--since") from exc
    return as_utc(moment)


@click.group(name="backups")
def backups_group() -> None:
    """Backup health, restore tests, and erasure replay after a restore."""


@backups_group.command(name="health")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def health_command(*, as_json: bool) -> None:
    """Check every configured source; exit 0 ok, 1 degraded, 2 critical (for cron and monitoring)."""

    async def _health(session: AsyncSession, settings: Settings) -> BackupHealthOut:
        health = await services.check_health(settings)
        return health_out(health, await services.refresh_restore_gauges(session))

    report = _run(_health)
    if as_json:
        _echo_json(report)
    else:
        for system in report.systems:
            click.echo(f"{system.system}: {system.status}")
            for check in system.checks:
                click.echo(f"  {check.status:<8} {check.source}/{check.check}: {check.reason}")
        click.echo(f"overall: {report.status}")
    sys.exit(STATUS_ORDER[report.status])


@backups_group.command(name="restore-test")
@click.argument("system")
@click.option("--actor", default=None, help="Who runs it, for the audit log (default cli:<user>).")
def restore_test_command(system: str, actor: str | None) -> None:
    """Restore the newest dump of SYSTEM into a scratch database and check it; exit 1 if it failed."""

    async def _test(session: AsyncSession, settings: Settings) -> RestoreTestOut:
        row = await services.start_restore_test(session, settings, system, _actor(actor))
        await services.finish_restore_test(session, settings, row)
        return restore_test_out(
            row, await services.resurrected_subjects(session, system, row.resurrected_refs)
        )

    result = _run(_test)
    _echo_json(result)
    sys.exit(0 if result.status == "passed" else 1)


@backups_group.command(name="replay-erasures")
@click.argument("system")
@click.option(
    "--since", "since", required=True, help="Re-apply erasures recorded at or after this ISO 8601 time."
)
@click.option("--actor", default=None, help="Who runs it, for the audit log (default cli:<user>).")
def replay_command(system: str, since: str, actor: str | None) -> None:
    """After restoring SYSTEM from a backup: erase again every subject erased since --since.

    Subjects are found by the HMAC of their key (no identifier is kept). Safe to run twice.
    """
    moment = _since(since)

    async def _replay(session: AsyncSession, settings: Settings) -> replay.ReplayReport:
        targets = TargetRegistry(settings)
        try:
            return await replay.replay_erasures(
                session,
                settings,
                targets,
                system=system,
                since=moment,
                actor=_actor(actor),
            )
        finally:
            await targets.dispose()

    try:
        report = _run(_replay)
    except ConfigurationError as exc:
        click.echo(f"lethe backups: {exc}", err=True)
        sys.exit(3)
    _echo_json(report)
