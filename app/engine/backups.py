"""Backup sources and their health: dump directories, pgBackRest and WAL-G, judged against an RPO."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from app.lib.errors import ConfigurationError

__all__ = (
    "STATUS_ORDER",
    "BackupConfig",
    "BackupHealth",
    "Check",
    "DirectorySource",
    "DumpFile",
    "PgBackRestSource",
    "ScratchServer",
    "Source",
    "Status",
    "SystemBackups",
    "SystemHealth",
    "WalGSource",
    "check_directory",
    "check_pgbackrest",
    "check_source",
    "check_walg",
    "evaluate",
    "format_age",
    "list_dumps",
    "load_backup_config",
    "parse_backup_config",
    "read_sidecar",
    "sha256_of",
    "worst",
)

Status = Literal["ok", "degraded", "critical"]
STATUS_ORDER: dict[str, int] = {"ok": 0, "degraded": 1, "critical": 2}
"""Severity of each status; also the value of the ``lethe_backup_status`` gauge."""
SIDECAR_SUFFIX = ".sha256"
HASH_CHUNK = 1 << 20
MAX_REASON_OUTPUT = 200


# --- configuration ----------------------------------------------------------------------------


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


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Check:
    """One verdict on one source: ``freshness``, ``size``, ``checksum``, ``status``, ``archive``..."""

    source: str
    kind: str
    check: str
    status: Status
    reason: str
    newest_at: datetime | None = None
    age_seconds: float | None = None
    size_bytes: int | None = None


@dataclass(frozen=True, kw_only=True)
class SystemHealth:
    """Every check of one system; ``status`` is the worst of them."""

    system: str
    status: Status
    checks: list[Check]


@dataclass(frozen=True, kw_only=True)
class BackupHealth:
    """Health of every configured system; ``status`` is the worst over all of them."""

    status: Status
    checked_at: datetime
    systems: list[SystemHealth] = field(default_factory=list)


def worst(statuses: Sequence[Status]) -> Status:
    """The most severe status (``ok`` for none)."""
    return max(statuses, key=STATUS_ORDER.__getitem__, default="ok")


def format_age(seconds: float) -> str:
    """``3d 4h``, ``5h 12m``, ``42s``: how operators read ages."""
    whole = int(max(seconds, 0))
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


@dataclass(frozen=True, kw_only=True)
class _Backup:
    """A backup as any source describes it: when it finished and how large it is."""

    label: str
    finished_at: datetime
    size: int | None


@dataclass(frozen=True, kw_only=True)
class _Judge:
    source: str
    kind: str
    rpo: int
    now: datetime
    tolerance: float
    history: int

    def check(self, check: str, status: Status, reason: str, backup: _Backup | None = None) -> Check:
        age = None if backup is None else max((self.now - backup.finished_at).total_seconds(), 0.0)
        return Check(
            source=self.source,
            kind=self.kind,
            check=check,
            status=status,
            reason=reason,
            newest_at=None if backup is None else backup.finished_at,
            age_seconds=age,
            size_bytes=None if backup is None else backup.size,
        )

    def freshness(self, backups: Sequence[_Backup], what: str) -> Check:
        """Critical when there is no backup or the newest is older than the RPO."""
        if not backups:
            return self.check("freshness", "critical", f"no {what} found")
        newest = backups[0]
        age = max((self.now - newest.finished_at).total_seconds(), 0.0)
        limit = f"RPO {format_age(self.rpo)}"
        if age > self.rpo:
            return self.check(
                "freshness", "critical", f"newest {what} is {format_age(age)} old, beyond the {limit}", newest
            )
        return self.check("freshness", "ok", f"newest {what} is {format_age(age)} old ({limit})", newest)

    def size(self, backups: Sequence[_Backup], what: str) -> Check:
        """Degraded when the newest size strays from the median of earlier ones; critical at 0."""
        if not backups or backups[0].size is None:
            return self.check("size", "ok", f"no {what} size to compare", backups[0] if backups else None)
        newest, size = backups[0], backups[0].size
        if size == 0:
            return self.check("size", "critical", f"newest {what} is empty (0 bytes)", newest)
        earlier = [b.size for b in backups[1 : 1 + self.history] if b.size]
        if not earlier:
            return self.check("size", "ok", f"no earlier {what} to compare the size with", newest)
        baseline = statistics.median(earlier)
        ratio = size / baseline
        compared = f"the median of the {len(earlier)} previous ({int(baseline)} bytes)"
        if ratio < 1 - self.tolerance:
            return self.check(
                "size",
                "degraded",
                f"newest {what} is {round((1 - ratio) * 100)}% smaller than {compared}",
                newest,
            )
        if ratio > 1 + self.tolerance:
            return self.check(
                "size",
                "degraded",
                f"newest {what} is {round((ratio - 1) * 100)}% larger than {compared}",
                newest,
            )
        return self.check(
            "size", "ok", f"newest {what} is {size} bytes, within tolerance of {compared}", newest
        )


def _judge(config: BackupConfig, system: str, source: Source, default_rpo: int, now: datetime) -> _Judge:
    return _Judge(
        source=source.label,
        kind=str(source.__struct_config__.tag),
        rpo=config.rpo_for(system, source, default_rpo),
        now=now,
        tolerance=source.size_tolerance,
        history=source.history,
    )


# --- dump directories -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DumpFile:
    """One dump of a directory source."""

    path: Path
    size: int
    modified_at: datetime

    @property
    def sidecar(self) -> Path:
        """Where its ``.sha256`` sidecar is expected."""
        return self.path.with_name(self.path.name + SIDECAR_SUFFIX)


def list_dumps(source: DirectorySource) -> list[DumpFile]:
    """Regular files matching the pattern, newest first (mtime, then name); sidecars excluded."""
    dumps = []
    for path in Path(source.path).glob(source.pattern):
        if path.name.endswith(SIDECAR_SUFFIX) or not path.is_file():
            continue
        stat = path.stat()
        dumps.append(
            DumpFile(path=path, size=stat.st_size, modified_at=datetime.fromtimestamp(stat.st_mtime, UTC))
        )
    return sorted(dumps, key=lambda d: (d.modified_at, d.path.name), reverse=True)


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (dumps can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_sidecar(path: Path) -> str | None:
    """The digest in a ``.sha256`` sidecar (``sha256sum`` format or bare), None when malformed."""
    words = path.read_text(encoding="utf-8", errors="replace").split()
    digest = words[0].lower() if words else ""
    if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
        return digest
    return None


def _checksum(judge: _Judge, dump: DumpFile, backup: _Backup, *, required: bool) -> Check:
    if not dump.sidecar.exists():
        status: Status = "degraded" if required else "ok"
        return judge.check("checksum", status, f"no {SIDECAR_SUFFIX} sidecar next to the newest dump", backup)
    expected = read_sidecar(dump.sidecar)
    if expected is None:
        return judge.check(
            "checksum", "critical", f"the {SIDECAR_SUFFIX} sidecar holds no SHA-256 digest", backup
        )
    if sha256_of(dump.path) != expected:
        return judge.check(
            "checksum",
            "critical",
            f"SHA-256 of the newest dump does not match its {SIDECAR_SUFFIX} sidecar "
            "(truncated or corrupted)",
            backup,
        )
    return judge.check("checksum", "ok", f"SHA-256 matches the {SIDECAR_SUFFIX} sidecar", backup)


def check_directory(source: DirectorySource, judge: _Judge) -> list[Check]:
    """Freshness, size trend and checksum of the newest dump in a directory."""
    if not Path(source.path).is_dir():
        return [judge.check("freshness", "critical", f"dump directory {source.path} does not exist")]
    dumps = list_dumps(source)
    backups = [_Backup(label=d.path.name, finished_at=d.modified_at, size=d.size) for d in dumps]
    what = f"dump matching {source.pattern}"
    checks = [judge.freshness(backups, what)]
    if dumps:
        checks.append(judge.size(backups, "dump"))
        checks.append(_checksum(judge, dumps[0], backups[0], required=source.require_checksum))
    return checks


# --- pgBackRest -------------------------------------------------------------------------------


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _pgbackrest_backups(stanza: dict[str, Any]) -> tuple[list[_Backup], list[_Backup]]:
    """(backups without error, backups flagged ``error``), each newest first."""
    good: list[_Backup] = []
    bad: list[_Backup] = []
    for entry in stanza.get("backup") or []:
        finished = _timestamp((entry.get("timestamp") or {}).get("stop"))
        if finished is None:
            continue
        size = (entry.get("info") or {}).get("size")
        backup = _Backup(
            label=str(entry.get("label", "?")),
            finished_at=finished,
            size=size if isinstance(size, int) else None,
        )
        (bad if entry.get("error") else good).append(backup)
    return (
        sorted(good, key=lambda b: b.finished_at, reverse=True),
        sorted(bad, key=lambda b: b.finished_at, reverse=True),
    )


def _stanza_checks(stanza: dict[str, Any], judge: _Judge) -> list[Check]:
    status = stanza.get("status") or {}
    code, message = status.get("code"), str(status.get("message", "no status"))
    checks = []
    if code == 0:
        checks.append(judge.check("status", "ok", f"stanza status: {message}"))
    else:
        checks.append(judge.check("status", "critical", f"stanza status {code}: {message}"))
    good, bad = _pgbackrest_backups(stanza)
    checks.append(judge.freshness(good, "valid backup"))
    if bad and (not good or bad[0].finished_at > good[0].finished_at):
        checks.append(
            judge.check(
                "errors", "degraded", f"the latest backup {bad[0].label} finished with errors", bad[0]
            )
        )
    checks.append(judge.size(good, "backup (database size)"))
    archives = [a for a in stanza.get("archive") or [] if a.get("max")]
    if good and not archives:
        checks.append(judge.check("archive", "degraded", "no WAL archive: point-in-time recovery impossible"))
    elif archives:
        checks.append(judge.check("archive", "ok", f"WAL archived up to {archives[-1]['max']}"))
    return checks


def check_pgbackrest(document: Any, source: PgBackRestSource, judge: _Judge) -> list[Check]:
    """Checks of every stanza (or the configured one) in ``pgbackrest info --output=json``."""
    if not isinstance(document, list):
        return [judge.check("status", "critical", "pgbackrest info output is not a JSON list of stanzas")]
    stanzas = [s for s in document if isinstance(s, dict)]
    if source.stanza is not None:
        stanzas = [s for s in stanzas if s.get("name") == source.stanza]
    if not stanzas:
        wanted = f"stanza {source.stanza}" if source.stanza else "any stanza"
        return [judge.check("status", "critical", f"pgbackrest info reports no {wanted}")]
    checks = []
    for stanza in stanzas:
        label = f"{judge.source}:{stanza.get('name', '?')}"
        checks.extend(_stanza_checks(stanza, _replace_source(judge, label)))
    return checks


def _replace_source(judge: _Judge, label: str) -> _Judge:
    return _Judge(
        source=label,
        kind=judge.kind,
        rpo=judge.rpo,
        now=judge.now,
        tolerance=judge.tolerance,
        history=judge.history,
    )


# --- WAL-G ------------------------------------------------------------------------------------


def _walg_backup(entry: dict[str, Any]) -> _Backup | None:
    finished = _timestamp(entry.get("finish_time")) or _timestamp(entry.get("time"))
    if finished is None:
        return None
    size = entry.get("compressed_size")
    return _Backup(
        label=str(entry.get("backup_name", "?")),
        finished_at=finished,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
    )


def check_walg(document: Any, judge: _Judge) -> list[Check]:
    """Freshness and size trend from ``wal-g backup-list --json [--detail]``."""
    if document is None:
        document = []  # WAL-G prints nothing (or null) when the storage holds no backup
    if not isinstance(document, list):
        return [judge.check("status", "critical", "wal-g backup-list output is not a JSON list")]
    backups = [b for b in (_walg_backup(e) for e in document if isinstance(e, dict)) if b is not None]
    backups.sort(key=lambda b: b.finished_at, reverse=True)
    return [judge.freshness(backups, "base backup"), judge.size(backups, "base backup (compressed)")]


# --- reading command output -------------------------------------------------------------------


class _Unreadable(Exception):
    """The source's output could not be obtained; the message is the check's reason."""


async def _run(command: Sequence[str]) -> bytes:
    """Standard output of ``command`` (no shell); the caller bounds the time with asyncio.timeout."""
    program = Path(command[0]).name
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise _Unreadable(f"{program} is not installed (command not found)") from exc
    try:
        stdout, stderr = await process.communicate()
    except asyncio.CancelledError:
        process.kill()
        await process.wait()
        raise
    if process.returncode:
        tail = _last_line(stderr)
        raise _Unreadable(f"{program} exited with code {process.returncode}: {tail}".rstrip(": "))
    return stdout


def _last_line(output: bytes) -> str:
    lines = [line.strip() for line in output.decode("utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1][:MAX_REASON_OUTPUT] if lines else ""


async def _raw_output(source: PgBackRestSource | WalGSource, seconds: float) -> bytes:
    if source.file is not None:
        try:
            return await asyncio.to_thread(Path(source.file).read_bytes)
        except OSError as exc:
            raise _Unreadable(f"cannot read {source.file}: {exc.strerror}") from exc
    assert source.command is not None  # noqa: S101 - guaranteed by __post_init__
    try:
        async with asyncio.timeout(seconds):
            return await _run(source.command)
    except TimeoutError as exc:
        raise _Unreadable(f"{Path(source.command[0]).name} did not answer within {seconds:g}s") from exc


async def _document(source: PgBackRestSource | WalGSource, judge: _Judge, seconds: float) -> Any | Check:
    """The JSON the source points at, or a critical ``status`` check saying why it is unreadable."""
    try:
        raw = await _raw_output(source, seconds)
    except _Unreadable as exc:
        return judge.check("status", "critical", str(exc))
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return judge.check("status", "critical", "the output is not JSON (was --output=json / --json given?)")


async def check_source(
    config: BackupConfig,
    system: str,
    source: Source,
    *,
    default_rpo: int,
    now: datetime,
    command_timeout: float,
) -> list[Check]:
    """Every check of one source (file reads and hashing run in a thread)."""
    judge = _judge(config, system, source, default_rpo, now)
    if isinstance(source, DirectorySource):
        return await asyncio.to_thread(check_directory, source, judge)
    document = await _document(source, judge, command_timeout)
    if isinstance(document, Check):
        return [document]
    if isinstance(source, PgBackRestSource):
        return check_pgbackrest(document, source, judge)
    return check_walg(document, judge)


async def evaluate(
    config: BackupConfig, *, default_rpo: int, command_timeout: float = 60.0, now: datetime | None = None
) -> BackupHealth:
    """Health of every configured system, sources checked concurrently."""
    moment = now or datetime.now(UTC)
    systems = []
    for system, backups in sorted(config.systems.items()):
        results = await asyncio.gather(
            *(
                check_source(
                    config,
                    system,
                    source,
                    default_rpo=default_rpo,
                    now=moment,
                    command_timeout=command_timeout,
                )
                for source in backups.sources
            )
        )
        checks = [check for result in results for check in result]
        systems.append(SystemHealth(system=system, status=worst([c.status for c in checks]), checks=checks))
    return BackupHealth(status=worst([s.status for s in systems]), checked_at=moment, systems=systems)
