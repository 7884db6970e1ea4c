"""``lethe manifest lint FILE`` and ``lethe manifest scaffold DATABASE_URL``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import msgspec
import rich_click as click

from app.config import Settings
from app.engine.targets import TargetRegistry, async_url
from app.lib.errors import LetheError
from app.manifest.issues import Issue, strict
from app.manifest.lint import lint
from app.manifest.loading import load_manifest_file
from app.manifest.model import Connection, Manifest
from app.manifest.names import manifest_schemas, split_table
from app.manifest.scaffold import scaffold
from app.manifest.schema import SchemaInfo
from app.manifest.validation import validate

__all__ = ("manifest_group",)

_URL_VARIABLE = "LETHE_MANIFEST_TARGET_URL"


@click.group(name="manifest")
def manifest_group() -> None:
    """Check manifests against their databases and draft new ones."""


async def _reflect(
    manifest: Manifest | None, url: str | None, schemas: tuple[str, ...] = (), *, every: bool = False
) -> SchemaInfo:
    """Reflect the database named by ``url`` or by the manifest's connection reference, in the
    manifest's schemas (or ``schemas``; ``every``: all non-system schemas)."""
    targets = TargetRegistry(Settings(), {_URL_VARIABLE: url} if url else None)
    connection = Connection(env=_URL_VARIABLE) if url or manifest is None else manifest.connection
    named = manifest_schemas(manifest) if manifest is not None else schemas
    try:
        return await targets.reflect(
            manifest.system if manifest else "scaffold", connection, named, every=every
        )
    finally:
        await targets.dispose()


async def _prove(manifest: Manifest, url: str | None, schema: SchemaInfo) -> list[Issue]:
    """The CHECK proof of :func:`app.engine.check_proof.prove_checks` against the same database."""
    targets = TargetRegistry(Settings(), {_URL_VARIABLE: url} if url else None)
    if url:
        manifest = msgspec.structs.replace(manifest, connection=Connection(env=_URL_VARIABLE))
    try:
        return await targets.prove_checks(manifest, schema)
    finally:
        await targets.dispose()


def _line(issue: Issue) -> str:
    label = "finding (acknowledged)" if issue.acknowledged else issue.severity
    return f"{label:<22} {issue.path}: {issue.message}"


@manifest_group.command(name="lint")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--url",
    default=None,
    help="Database URL to check against (default: the manifest's connection reference).",
)
@click.option(
    "--strict",
    "strict_mode",
    is_flag=True,
    envvar="LETHE_MANIFEST_STRICT",
    help="Report unacknowledged findings as the errors a strict registration refuses "
    "(default: LETHE_MANIFEST_STRICT).",
)
def lint_command(file: Path, url: str | None, *, strict_mode: bool) -> None:
    """Validate FILE against its live database and list personal-looking data it misses.

    Exits 1 on validation errors or on findings no `ignore:` entry acknowledges. With --strict
    those findings are listed as errors, as registration under LETHE_MANIFEST_STRICT=true
    refuses them.
    """
    try:
        manifest = load_manifest_file(file)
        schema = asyncio.run(_reflect(manifest, url))
    except LetheError as error:
        raise click.ClickException(error.detail) from error
    _, issues = validate(manifest, schema)
    try:
        issues += asyncio.run(_prove(manifest, url, schema))
    except LetheError as error:
        raise click.ClickException(error.detail) from error
    issues += lint(manifest, schema)
    if strict_mode:
        issues = strict(issues)
    for issue in issues:
        click.echo(_line(issue))
    blocking = [
        i for i in issues if i.severity == "error" or (i.severity == "finding" and not i.acknowledged)
    ]
    click.echo(
        f"{len(blocking)} blocking, {len(issues) - len(blocking)} other issue(s) in {file.name}",
        err=True,
    )
    if blocking:
        sys.exit(1)


@manifest_group.command(name="scaffold")
@click.argument("database_url")
@click.option("--system", default=None, help="System key (default: the database name).")
@click.option("--subject", default=None, help="Subject table (default: users/customers/... guess).")
@click.option(
    "--env",
    "env_var",
    default=None,
    help="Variable the manifest will read the URL from (default: LETHE_TARGET_<SYSTEM>_URL).",
)
@click.option(
    "--schema",
    "schemas",
    multiple=True,
    help="Schema (MariaDB: database) to reflect besides the default one; repeatable. "
    "Default on PostgreSQL: every non-system schema.",
)
def scaffold_command(
    database_url: str, system: str | None, subject: str | None, env_var: str | None, schemas: tuple[str, ...]
) -> None:
    """Reflect DATABASE_URL and print a draft manifest (YAML) with guesses to review.

    The schemas reflected are named on standard error and in the draft's first lines.
    """
    try:
        parsed = async_url(database_url)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="DATABASE_URL") from error
    name = system or _system_name(parsed.database)
    every = not schemas and parsed.get_backend_name() == "postgresql"
    try:
        schema = asyncio.run(
            _reflect(None, parsed.render_as_string(hide_password=False), schemas, every=every)
        )
        click.echo(f"reflected schema(s): {', '.join(schema.schemas)}", err=True)
        text = scaffold(
            schema,
            system=name,
            env_var=env_var or f"LETHE_TARGET_{name.upper()}_URL".replace("-", "_"),
            subject_table=subject,
            schemas=_listed_schemas(schema, parsed.get_backend_name()),
        )
    except (LetheError, ValueError) as error:
        raise click.ClickException(getattr(error, "detail", str(error))) from error
    click.echo(text, nl=False)


def _listed_schemas(schema: SchemaInfo, backend: str) -> tuple[str, ...]:
    """``connection.schemas`` of a draft: the schemas holding tables besides the default one, and
    on PostgreSQL a default other than ``public`` first (a dump restored for a restore test does
    not carry the database's search_path)."""
    holding = {split_table(name)[0] for name in schema.tables}
    named = [s for s in schema.schemas[1:] if s in holding]
    default = schema.schemas[0] if schema.schemas else None
    if backend == "postgresql" and default is not None and default != "public" and None in holding:
        named.insert(0, default)
    return tuple(named)


def _system_name(database: str | None) -> str:
    stem = Path(database or "target").stem.lower()
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem).strip("-_")
    return cleaned if cleaned and cleaned[0].isalpha() else f"system-{cleaned or 'target'}"
