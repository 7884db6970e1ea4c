"""pgBackRest (``info --output=json``) and WAL-G (``backup-list --json``): output read and judged."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.engine.backups.config import PgBackRestSource, WalGSource
from app.engine.backups.verdicts import Backup, Check, Judge
from app.lib.clock import as_utc

__all__ = ("check_pgbackrest", "check_walg", "read_document")

MAX_REASON_OUTPUT = 200
# --- pgBackRest -------------------------------------------------------------------------------


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return as_utc(parsed)
    return None


def _pgbackrest_backups(stanza: dict[str, Any]) -> tuple[list[Backup], list[Backup]]:
    """(backups without error, backups flagged ``error``), each newest first."""
    good: list[Backup] = []
    bad: list[Backup] = []
    for entry in stanza.get("backup") or []:
        finished = _timestamp((entry.get("timestamp") or {}).get("stop"))
        if finished is None:
            continue
        size = (entry.get("info") or {}).get("size")
        backup = Backup(
            label=str(entry.get("label", "?")),
            finished_at=finished,
            size=size if isinstance(size, int) else None,
        )
        (bad if entry.get("error") else good).append(backup)
    return (
        sorted(good, key=lambda b: b.finished_at, reverse=True),
        sorted(bad, key=lambda b: b.finished_at, reverse=True),
    )


def _stanza_checks(stanza: dict[str, Any], judge: Judge) -> list[Check]:
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


def check_pgbackrest(document: Any, source: PgBackRestSource, judge: Judge) -> list[Check]:
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
        checks.extend(_stanza_checks(stanza, dataclasses.replace(judge, source=label)))
    return checks


# --- WAL-G ------------------------------------------------------------------------------------


def _walg_backup(entry: dict[str, Any]) -> Backup | None:
    finished = _timestamp(entry.get("finish_time")) or _timestamp(entry.get("time"))
    if finished is None:
        return None
    size = entry.get("compressed_size")
    return Backup(
        label=str(entry.get("backup_name", "?")),
        finished_at=finished,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
    )


def check_walg(document: Any, judge: Judge) -> list[Check]:
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


async def read_document(source: PgBackRestSource | WalGSource, judge: Judge, seconds: float) -> Any | Check:
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
