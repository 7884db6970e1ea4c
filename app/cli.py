"""The ``lethe`` command: Litestar's ``run``, advanced-alchemy's ``database``, and Lethe's own."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
from advanced_alchemy.extensions.litestar.cli import database_group
from litestar.cli._utils import LitestarEnv, LitestarGroup
from litestar.cli.commands import core, schema

from app.config import get_settings
from app.domain.audit.cli import audit_group
from app.domain.backups.cli import backups_group
from app.domain.manifests.cli import manifest_group
from app.domain.requests.cli import worker_command
from app.domain.retention.cli import retention_group
from app.lib.auth import ALL_SCOPES, mint_token

__all__ = ("lethe_group",)

APP_PATH = "app.asgi:create_app"
APP_COMMANDS = frozenset({"run", "routes", "schema", "database", "db"})
"""Litestar and advanced-alchemy commands that expect the loaded app in the click context."""


@click.group(cls=LitestarGroup, name="lethe", context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def lethe_group(ctx: click.Context) -> None:
    """Lethe: GDPR data-subject requests, retention, backups and audit.

    Settings come from LETHE_* environment variables (see README).
    """
    if ctx.obj is None:
        # The app (and so the secrets it needs) is built only by commands that use it.
        asks_help = bool({"--help", "-h"} & set(sys.argv[1:]))
        if ctx.invoked_subcommand in APP_COMMANDS and not asks_help:
            ctx.obj = LitestarEnv.from_env(APP_PATH)
        else:
            ctx.obj = lambda: LitestarEnv.from_env(APP_PATH)


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
    token_command,
    demo_command,
    core.run_command,
    core.routes_command,
    schema.schema_group,
    database_group,
    audit_group,
    manifest_group,
    worker_command,
    retention_group,
    backups_group,
):
    lethe_group.add_command(_command)  # type: ignore[arg-type]


def run() -> None:
    """Entry point with one-line errors for bad configuration."""
    from app.lib.errors import ConfigurationError

    try:
        lethe_group(prog_name="lethe")
    except ConfigurationError as exc:
        sys.stderr.write(f"lethe: configuration error: {exc}\n")
        sys.exit(2)
