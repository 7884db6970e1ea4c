"""The ``lethe`` command: serve, migrate, and operate Lethe from a shell, a Job or a CronJob.

Command groups are imported when invoked, so ``lethe run`` checks its settings (and fails on a bad
one) before the rest of the application is loaded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from app import __version__
from app.config import get_settings

__all__ = ("COMMANDS", "lethe_group")


def _database() -> click.Command:
    from app.db.cli import database_group

    return database_group


def _audit() -> click.Command:
    from app.domain.audit.cli import audit_group

    return audit_group


def _backups() -> click.Command:
    from app.domain.backups.cli import backups_group

    return backups_group


def _manifest() -> click.Command:
    from app.domain.manifests.cli import manifest_group

    return manifest_group


def _retention() -> click.Command:
    from app.domain.retention.cli import retention_group

    return retention_group


def _worker() -> click.Command:
    from app.domain.requests.cli import worker_command

    return worker_command


def _token() -> click.Command:
    from app.lib.auth_cli import token_command

    return token_command


def _demo() -> click.Command:
    from app.demo.cli import demo_command

    return demo_command


class LetheGroup(click.Group):
    """The top-level group: its subcommands come from :data:`COMMANDS`, imported on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: ARG002 - click signature
        """Every command name, sorted."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:  # noqa: ARG002
        """The command called ``cmd_name`` (its module is imported now)."""
        factory = COMMANDS.get(cmd_name)
        return factory() if factory is not None else None


@click.group(name="lethe", cls=LetheGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="lethe", message="%(prog)s %(version)s")
@click.pass_context
def lethe_group(ctx: click.Context) -> None:
    """Lethe: GDPR data-subject requests, retention, backups and audit.

    Settings come from LETHE_* environment variables (secrets also from LETHE_<NAME>_FILE);
    see the README's Configuration section.
    """
    if ctx.invoked_subcommand != "run" and not ctx.resilient_parsing:
        from app.lib.settings_checks import unknown_variables

        for warning in unknown_variables(os.environ):
            click.echo(f"lethe: warning: {warning}", err=True)


@click.command(name="run")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0 in a container)."
)
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to serve on."
)
def run_command(host: str, port: int) -> None:
    """Serve the HTTP API, /healthz, /readyz and /metrics until SIGTERM.

    \b
    In the same process, unless LETHE_WORKERS_ENABLED=false:
      - request workers (exports, rectifications, erasures; leased, resumable),
      - the retention scheduler and the backup health refresher.
    Manifests in LETHE_MANIFESTS_DIR are registered at start-up. Every setting
    is checked first: a bad one (or any start-up failure) exits non-zero at once
    with one line naming it. The store must be migrated (lethe database upgrade);
    /readyz answers 503 until it is.
    """
    settings = get_settings()
    from app.server import serve

    serve(settings, host, port)


COMMANDS: dict[str, Callable[[], click.Command]] = {
    "run": lambda: run_command,
    "database": _database,
    "audit": _audit,
    "backups": _backups,
    "manifest": _manifest,
    "retention": _retention,
    "worker": _worker,
    "token": _token,
    "demo": _demo,
}
"""Command name -> a function returning the command (importing its module on first use)."""


def run() -> None:
    """Entry point with one-line errors for bad configuration."""
    from app.lib.errors import ConfigurationError

    try:
        lethe_group(prog_name="lethe")
    except ConfigurationError as exc:
        sys.stderr.write(f"lethe: configuration error: {exc}\n")
        sys.exit(2)
