"""``lethe demo``: the demo shop, its manifest and a token, served on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from app.config import get_settings

__all__ = ("demo_command",)


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
