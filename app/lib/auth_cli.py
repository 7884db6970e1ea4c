"""``lethe token``: mint a development token (needs an HS256 secret)."""

from __future__ import annotations

import click

from app.config import get_settings
from app.lib.auth import ALL_SCOPES, mint_token

__all__ = ("token_command",)


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
