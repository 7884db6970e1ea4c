"""Backup sources and their health: dump directories, pgBackRest and WAL-G, judged against an RPO.

``config`` reads the sources, ``verdicts`` holds statuses and the judge, ``dumps`` and ``tools``
check each kind of source; this module runs every check of every system.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from app.engine.backups.config import (
    BackupConfig,
    DirectorySource,
    PgBackRestSource,
    ScratchServer,
    Source,
    SystemBackups,
    WalGSource,
    load_backup_config,
    parse_backup_config,
)
from app.engine.backups.dumps import DumpFile, check_directory, list_dumps, read_sidecar, sha256_of
from app.engine.backups.tools import check_pgbackrest, check_walg, read_document
from app.engine.backups.verdicts import (
    STATUS_ORDER,
    BackupHealth,
    Check,
    Status,
    SystemHealth,
    format_age,
    judge_for,
    worst,
)
from app.lib.clock import utcnow

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
    judge = judge_for(config, system, source, default_rpo, now)
    if isinstance(source, DirectorySource):
        return await asyncio.to_thread(check_directory, source, judge)
    document = await read_document(source, judge, command_timeout)
    if isinstance(document, Check):
        return [document]
    if isinstance(source, PgBackRestSource):
        return check_pgbackrest(document, source, judge)
    return check_walg(document, judge)


async def evaluate(
    config: BackupConfig, *, default_rpo: int, command_timeout: float = 60.0, now: datetime | None = None
) -> BackupHealth:
    """Health of every configured system, sources checked concurrently."""
    moment = now or utcnow()
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
