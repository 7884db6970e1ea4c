"""``lethe database``: migrate the service store (upgrade, downgrade, show the revision)."""

from __future__ import annotations

import asyncio
import sys

import click

from app.config import get_settings
from app.db.store import create_store_engine, current_revision, head_revision, migrate_store

__all__ = ("database_group",)


@click.group(name="database")
def database_group() -> None:
    """Migrations of the service store named by LETHE_DATABASE_URL (Alembic, never at start-up)."""


def _migrate(direction: str, revision: str) -> None:
    from app.lib.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)

    async def _main() -> str | None:
        engine = create_store_engine(settings)
        try:
            await migrate_store(engine, direction, revision)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    reached = asyncio.run(_main())
    click.echo(f"service store at revision {reached or 'base'} (this build ships {head_revision()})")


@database_group.command(name="upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.option("--no-prompt", is_flag=True, help="Do not ask for confirmation (Jobs, CI, make migrate).")
def upgrade_command(revision: str, *, no_prompt: bool) -> None:
    """Migrate the store up to REVISION (the Helm pre-install/pre-upgrade hook runs this)."""
    if not no_prompt and not click.confirm(f"Upgrade the service store to {revision!r}?"):
        sys.exit(1)
    _migrate("upgrade", revision)


@database_group.command(name="downgrade")
@click.argument("revision")
@click.option("--no-prompt", is_flag=True, help="Do not ask for confirmation.")
def downgrade_command(revision: str, *, no_prompt: bool) -> None:
    """Migrate the store down to REVISION (e.g. before rolling back to an older image)."""
    if not no_prompt and not click.confirm(f"Downgrade the service store to {revision!r}?"):
        sys.exit(1)
    _migrate("downgrade", revision)


@database_group.command(name="show-current-revision")
def show_current_revision_command() -> None:
    """Print the store's revision and the newest one this build ships; exit 1 when they differ."""
    settings = get_settings()

    async def _main() -> str | None:
        engine = create_store_engine(settings)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    current, head = asyncio.run(_main()), head_revision()
    click.echo(f"current: {current or 'base'}\nhead: {head}")
    if current != head:
        sys.exit(1)
