"""``lethe audit verify``, ``checkpoint`` and ``sequence``: the chain from a shell or cron."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import msgspec
import rich_click as click
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings, get_settings
from app.db.store import create_store_engine
from app.domain.audit import chain
from app.domain.audit.sequencer import pending_count, sequence_now
from app.lib.errors import LetheError

__all__ = ("audit_group",)

T = TypeVar("T")


def _run(work: Callable[[AsyncSession, Settings], Awaitable[T]], *, link_pending: bool = True) -> T:
    """Run ``work`` on the store; first link what is pending, unless ``link_pending`` is False."""
    settings = get_settings()

    async def _main() -> T:
        engine = create_store_engine(settings)
        try:
            if link_pending:
                await sequence_now(engine, batch_size=settings.audit_sequencer_batch_size)
            async with AsyncSession(engine) as session:
                return await work(session, settings)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(_main())
    except LetheError as exc:
        click.echo(f"lethe audit: {exc.detail}", err=True)
        sys.exit(2)


@click.group(name="audit")
def audit_group() -> None:
    """Verify the audit chain and take signed checkpoints."""


@audit_group.command(name="verify")
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint JSON from 'lethe audit checkpoint' to verify against.",
)
def verify_command(checkpoint_file: Path | None) -> None:
    """Recompute the chain; exit 1 naming the first broken seq, 0 when it verifies."""
    checkpoint = None
    if checkpoint_file is not None:
        try:
            checkpoint = msgspec.json.decode(checkpoint_file.read_bytes(), type=chain.Checkpoint)
        except msgspec.DecodeError as exc:
            raise click.BadParameter(f"not a checkpoint: {exc}", param_hint="--checkpoint") from exc

    async def _verify(session: AsyncSession, settings: Settings) -> chain.ChainReport:
        checkpoints = chain.sink_checkpoints(settings)
        if checkpoint is not None:
            chain.verify_checkpoint_signature(settings, checkpoint)
            checkpoints.append(checkpoint)
        return await chain.verify_chain(session, checkpoints)

    report = _run(_verify)
    if not report.ok:
        click.echo(
            f"audit chain broken at seq {report.broken_seq}: {report.reason} ({report.detail})",
            err=True,
        )
        sys.exit(1)
    suffix = f", matches checkpoint at seq {checkpoint.seq}" if checkpoint else ""
    pending = f", {report.pending} pending" if report.pending else ""
    click.echo(f"audit chain ok: {report.checked} events, head seq {report.head_seq}{suffix}{pending}")


@audit_group.command(name="checkpoint")
def checkpoint_command() -> None:
    """Print a signed checkpoint of the current head as JSON (needs LETHE_AUDIT_SIGNING_KEY)."""
    checkpoint = _run(chain.make_checkpoint)
    click.echo(msgspec.json.format(msgspec.json.encode(checkpoint), indent=2).decode())


@audit_group.command(name="sequence")
def sequence_command() -> None:
    """Link every pending audit event into the chain now (the sequencer does this continuously)."""

    async def _pending(session: AsyncSession, _: Settings) -> int:
        return await pending_count(await session.connection())

    remaining = _run(_pending)
    click.echo(f"audit events pending after linking: {remaining}")
