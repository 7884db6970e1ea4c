"""Backup sources per system, read from the file ``LETHE_BACKUP_SOURCES`` names."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import yaml

from app.lib.errors import ConfigurationError

__all__ = (
    "BackupConfig",
    "DirectorySource",
    "PgBackRestSource",
    "ScratchServer",
    "Source",
    "SystemBackups",
    "WalGSource",
    "load_backup_config",
    "parse_backup_config",
)


class _Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Base of the configuration structs: unknown keys are errors (a typo must not disable a check)."""


class _SourceBase(_Config, kw_only=True, frozen=True, tag_field="kind"):
    name: str | None = None
    """Label of the source in health reports and metrics; defaults to its kind."""
    rpo_seconds: int | None = None
    """Overrides the system's (or the global) RPO for this source."""
    size_tolerance: float = 0.5
    """Relative change of the newest backup's size against the median of earlier ones that is
    still ``ok`` (0.5: from half to one and a half times the median)."""
    history: int = 7
    """How many earlier backups the size is compared with."""

    @property
    def label(self) -> str:
        """The source's name in reports."""
        return self.name or str(self.__struct_config__.tag)


class DirectorySource(_SourceBase, kw_only=True, frozen=True, tag="directory"):
    """A directory of dump files (``pg_dump -Fc`` output for restore tests), newest by mtime.

    Each dump may have a sidecar ``<file>.sha256`` (``sha256sum`` output or the bare digest).
    """

    path: str
    pattern: str = "*.dump"
    require_checksum: bool = True
    """A dump without a sidecar is ``degraded`` (``false``: ``ok``)."""


class _CommandSource(_SourceBase, kw_only=True, frozen=True):
    command: tuple[str, ...] | None = None
    """Program and arguments run without a shell; its standard output is the JSON document."""
    file: str | None = None
    """Or a file holding that output (written by the backup job, e.g. after each backup)."""

    def __post_init__(self) -> None:
        if (self.command is None) == (self.file is None):
            raise ValueError("give exactly one of `command` or `file`")
        if self.command is not None and not self.command:
            raise ValueError("`command` needs at least the program name")


class PgBackRestSource(_CommandSource, kw_only=True, frozen=True, tag="pgbackrest"):
    """``pgbackrest info --output=json``; ``stanza`` restricts the report to one stanza."""

    stanza: str | None = None


class WalGSource(_CommandSource, kw_only=True, frozen=True, tag="walg"):
    """``wal-g backup-list --json --detail`` (without ``--detail`` sizes are not checked)."""


Source = DirectorySource | PgBackRestSource | WalGSource


class ScratchServer(_Config, kw_only=True, frozen=True):
    """Where restore tests create their scratch databases: a PostgreSQL URL read from ``env``
    (a variable name) or ``file`` (a path), never written in the configuration itself.

    The role needs CREATEDB. Use a server that is not production's: a restore loads a full copy.
    """

    env: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of `env` (variable name) or `file` (path)")

    def url(self) -> str:
        """The server URL (any database on it; scratch databases are created next to it).

        Raises:
            ConfigurationError: the variable is unset or the file unreadable.
        """
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigurationError(
                    f"{self.env} (scratch server of the backup restore tests) is not set"
                )
            return value.strip()
        assert self.file is not None  # noqa: S101 - guaranteed by __post_init__
        try:
            return Path(self.file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read scratch server URL file {self.file}: {exc.strerror}"
            ) from exc


class SystemBackups(_Config, kw_only=True, frozen=True):
    """The backups of one target system (named like its manifest)."""

    sources: tuple[Source, ...]
    rpo_seconds: int | None = None
    scratch: ScratchServer | None = None
    """Needed for restore tests, which use the newest dump of the first ``directory`` source."""

    def __post_init__(self) -> None:
        labels = [s.label for s in self.sources]
        if len(labels) != len(set(labels)):
            raise ValueError("two sources have the same name; give each a distinct `name`")

    def restore_source(self) -> DirectorySource | None:
        """The directory whose newest dump restore tests restore."""
        return next((s for s in self.sources if isinstance(s, DirectorySource)), None)


class BackupConfig(_Config, kw_only=True, frozen=True):
    """The file named by ``LETHE_BACKUP_SOURCES``: every system's backup sources."""

    systems: dict[str, SystemBackups] = msgspec.field(default_factory=dict)
    rpo_seconds: int | None = None
    """Default RPO of every system; ``LETHE_BACKUP_RPO_SECONDS`` when absent."""

    def rpo_for(self, system: str, source: Source, default: int) -> int:
        """The RPO that applies to one source: source, then system, then file, then settings."""
        backups = self.systems[system]
        for value in (source.rpo_seconds, backups.rpo_seconds, self.rpo_seconds):
            if value is not None:
                return value
        return default


def parse_backup_config(text: str, origin: str = "backup sources") -> BackupConfig:
    """Decode the YAML (or JSON) configuration of backup sources.

    Raises:
        ConfigurationError: the document is malformed; the message names the key path.
    """
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{origin}: not valid YAML/JSON: {exc}") from exc
    try:
        return msgspec.convert(data, BackupConfig, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"{origin}: {exc}") from exc


def load_backup_config(path: str | None) -> BackupConfig:
    """The configuration at ``path`` (``LETHE_BACKUP_SOURCES``); empty when no path is set."""
    if not path:
        return BackupConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"LETHE_BACKUP_SOURCES: cannot read {path}: {exc.strerror}") from exc
    return parse_backup_config(text, f"LETHE_BACKUP_SOURCES ({path})")
