"""Verdicts on backups: statuses, checks, and the judge applying an RPO and a size tolerance."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from app.engine.backups.config import BackupConfig, Source

__all__ = (
    "STATUS_ORDER",
    "Backup",
    "BackupHealth",
    "Check",
    "Judge",
    "Status",
    "SystemHealth",
    "format_age",
    "judge_for",
    "worst",
)

Status = Literal["ok", "degraded", "critical"]
STATUS_ORDER: dict[str, int] = {"ok": 0, "degraded": 1, "critical": 2}
"""Severity of each status; also the value of the ``lethe_backup_status`` gauge."""


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
class Backup:
    """A backup as any source describes it: when it finished and how large it is."""

    label: str
    finished_at: datetime
    size: int | None


@dataclass(frozen=True, kw_only=True)
class Judge:
    """Applies one source's RPO and size tolerance at one instant; every check comes from here."""

    source: str
    kind: str
    rpo: int
    now: datetime
    tolerance: float
    history: int

    def check(self, check: str, status: Status, reason: str, backup: Backup | None = None) -> Check:
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

    def freshness(self, backups: Sequence[Backup], what: str) -> Check:
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

    def size(self, backups: Sequence[Backup], what: str) -> Check:
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


def judge_for(config: BackupConfig, system: str, source: Source, default_rpo: int, now: datetime) -> Judge:
    """The judge of ``source`` with the RPO that applies to it (source, system, file, settings)."""
    return Judge(
        source=source.label,
        kind=str(source.__struct_config__.tag),
        rpo=config.rpo_for(system, source, default_rpo),
        now=now,
        tolerance=source.size_tolerance,
        history=source.history,
    )
