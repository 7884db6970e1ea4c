"""Directories of dump files: the newest dump, its age, its size trend, its ``.sha256`` sidecar."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from app.engine.backups.config import DirectorySource
from app.engine.backups.verdicts import Backup, Check, Judge, Status

__all__ = ("SIDECAR_SUFFIX", "DumpFile", "check_directory", "list_dumps", "read_sidecar", "sha256_of")

SIDECAR_SUFFIX = ".sha256"
HASH_CHUNK = 1 << 20


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


def _checksum(judge: Judge, dump: DumpFile, backup: Backup, *, required: bool) -> Check:
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


def check_directory(source: DirectorySource, judge: Judge) -> list[Check]:
    """Freshness, size trend and checksum of the newest dump in a directory."""
    if not Path(source.path).is_dir():
        return [judge.check("freshness", "critical", f"dump directory {source.path} does not exist")]
    dumps = list_dumps(source)
    backups = [Backup(label=d.path.name, finished_at=d.modified_at, size=d.size) for d in dumps]
    what = f"dump matching {source.pattern}"
    checks = [judge.freshness(backups, what)]
    if dumps:
        checks.append(judge.size(backups, "dump"))
        checks.append(_checksum(judge, dumps[0], backups[0], required=source.require_checksum))
    return checks
