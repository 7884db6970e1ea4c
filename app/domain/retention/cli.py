"""``lethe retention run-due``: one scheduler tick from a shell or a Kubernetes CronJob."""

from __future__ import annotations

import asyncio
import sys

import click
import msgspec

from app.config import Settings, get_settings
from app.db.retention import RetentionRun
from app.db.store import create_store_engine
from app.domain.retention.controllers import run_out
from app.domain.retention.jobs import RetentionRunner
from app.engine.targets import TargetRegistry
from app.lib.errors import LetheError
from app.lib.logging import configure_logging

__all__ = ("retention_group", "run_due")


async def run_due(settings: Settings, owner: str | None = None) -> list[RetentionRun]:
    """Sync manifest policies and run what is due, exactly once across replicas and pods."""
    engine = create_store_engine(settings)
    targets = TargetRegistry(settings)
    try:
        return await RetentionRunner(engine, targets, settings, owner=owner).run_due(actor="system:cronjob")
    finally:
        await targets.dispose()
        await engine.dispose()


@click.group(name="retention")
def retention_group() -> None:
    """Retention purges (policies come from manifests and the API)."""


@retention_group.command(name="run-due")
def run_due_command() -> None:
    """Run every policy whose window opened, and resume unfinished runs; one JSON line per run.

    Exits 1 when a run ended incomplete (it is resumed by the next call) so a CronJob shows it.
    """
    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        runs = asyncio.run(run_due(settings))
    except LetheError as exc:
        click.echo(f"lethe retention: {exc.detail}", err=True)
        sys.exit(2)
    for run in runs:
        click.echo(msgspec.json.encode(run_out(run)).decode())
    if not runs:
        click.echo("no retention policy is due")
    if any(run.status != "completed" for run in runs):
        sys.exit(1)
