"""Every ``lethe`` command and subcommand answers ``--help``; the production CLI is Lethe's own."""

from __future__ import annotations

from collections.abc import Iterator

import click
from click.testing import CliRunner

from app import __version__
from app.cli import lethe_group

DEVELOPER_COMMANDS = {"drop-all", "make-migrations", "edit", "init", "merge", "routes", "schema"}


def walk(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The argument path of every command below ``group``, groups included."""
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, name
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from walk(command, (*path, name))


def test_every_command_answers_help_with_exit_0() -> None:
    runner = CliRunner()
    paths = [(), *walk(lethe_group)]
    assert ("database", "upgrade") in paths
    assert ("retention", "run-due") in paths
    for path in paths:
        result = runner.invoke(lethe_group, [*path, "--help"], env={"LETHE_AUDIT_KEY": ""})
        assert result.exit_code == 0, f"lethe {' '.join(path)} --help: {result.output}{result.exception!r}"
        assert "Usage: lethe" in result.output


def test_developer_commands_are_not_offered() -> None:
    names = {path[-1] for path in walk(lethe_group)}
    assert not names & DEVELOPER_COMMANDS


def test_version_is_printed() -> None:
    result = CliRunner().invoke(lethe_group, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"lethe {__version__}"


def test_run_help_describes_lethe() -> None:
    output = CliRunner().invoke(lethe_group, ["run", "--help"]).output
    for option in ("--host", "--port", "LETHE_WORKERS_ENABLED", "LETHE_MANIFESTS_DIR", "/readyz"):
        assert option in output
    assert "--reload" not in output
    assert "--app" not in output
