"""The ``lethe`` command: serve, migrate, and operate Lethe from a shell, a Job or a CronJob."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from app import __version__
from app.config import get_settings
from app.db.cli import database_group
from app.domain.audit.cli import audit_group
from app.domain.backups.cli import backups_group
from app.domain.manifests.cli import manifest_group
from app.domain.requests.cli import worker_command
from app.domain.retention.cli import retention_group
from app.lib.auth import ALL_SCOPES, mint_token

__all__ = ("lethe_group",)


@click.group(name="lethe", context_settings={"help_option_names": ["-h", "--help"]})
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
    from app.server import serve

    serve(get_settings(), host, port)


@click.command(name="token")
@click.option("--sub", required=True, help="Subject (caller identity) of the token.")
@click.option(
    "--scope",
    "scope",
    default=" ".join(ALL_SCOPES),
    show_default="all scopes",
    help="Space separated scopes.",
)
@click.option("--ttl", default=3600, show_default=True, help="Lifetime in seconds.")
@click.option("--client-id", default=None, help="Calling client id (idempotency keys are scoped to it).")
def token_command(sub: str, scope: str, ttl: int, client_id: str | None) -> None:
    """Mint a development token (needs an HS256 secret)."""
    unknown = sorted(set(scope.split()) - set(ALL_SCOPES))
    if unknown:
        raise click.BadParameter(f"unknown scopes: {' '.join(unknown)}", param_hint="--scope")
    click.echo(
        mint_token(get_settings(), sub=sub, scopes=scope.split(), ttl_seconds=ttl, client_id=client_id)
    )


@click.command(name="demo")
@click.option("--port", envvar="PORT", default=8000, show_default=True, help="Port to serve on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--no-serve", is_flag=True, help="Prepare everything and print the curl lines, then exit.")
def demo_command(port: int, host: str, *, no_serve: bool) -> None:
    """Prepare the demo (store, shop database, manifest, token) and serve it."""
    from app.demo import prepare_demo, serve_demo

    settings = get_settings()
    if not settings.demo:
        raise click.UsageError("set LETHE_DEMO=1 to run the demo (make demo does)")
    info = asyncio.run(prepare_demo(settings, Path(".lethe")))
    click.echo(info.banner(host, port))
    if not no_serve:
        serve_demo(settings, host, port)


for _command in (
    run_command,
    token_command,
    demo_command,
    database_group,
    audit_group,
    manifest_group,
    worker_command,
    retention_group,
    backups_group,
):
    lethe_group.add_command(_command)


def run() -> None:
    """Entry point with one-line errors for bad configuration."""
    from app.lib.errors import ConfigurationError

    try:
        lethe_group(prog_name="lethe")
    except ConfigurationError as exc:
        sys.stderr.write(f"lethe: configuration error: {exc}\n")
        sys.exit(2)
