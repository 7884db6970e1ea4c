"""Restore tests: a dump restored into a scratch PostgreSQL database, checked, and always dropped."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import column, func, inspect, select, table, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from app.engine.backups import DumpFile
from app.engine.subjects import KeyReference, key_hasher
from app.engine.targets import asyncpg_server_settings
from app.manifest.names import split_table

__all__ = (
    "CUSTOM_FORMAT_MAGIC",
    "RestoreExpectation",
    "RestoreOutcome",
    "find_tombstoned_keys",
    "is_custom_format",
    "key_hasher",
    "restore_test",
    "scratch_database",
)

CUSTOM_FORMAT_MAGIC = b"PGDMP"
"""First bytes of a ``pg_dump -Fc`` archive."""
SCRATCH_PREFIX = "lethe_restore_"
"""How the erasure engine joins the values of a composite key before hashing."""
KEY_BATCH = 5_000

"""Maps a subject key (the values of its key columns) to its tombstone reference."""


@dataclass(frozen=True, kw_only=True)
class RestoreExpectation:
    """What a restored copy of a system must contain: the manifest's tables and its subject key.

    ``schemas`` is the manifest's ``connection.schemas``: the restored copy is read with them
    first on its search_path (then ``public``), because a dump does not carry the database's own
    ``search_path`` setting, so unqualified names find the same tables as in production.
    """

    tables: Sequence[str]
    subject_table: str
    key_columns: Sequence[str]
    schemas: Sequence[str] = ()

    def search_path(self) -> str:
        """The scratch session's search_path: the manifest's schemas, then ``public``."""
        quote = postgresql.dialect().identifier_preparer.quote_identifier  # type: ignore[no-untyped-call]
        return ", ".join(quote(s) for s in dict.fromkeys([*self.schemas, "public"]))


@dataclass(kw_only=True)
class RestoreOutcome:
    """What a restore test found; ``passed`` when pg_restore succeeded and every table has rows."""

    database: str
    restore_exit_code: int | None = None
    tables: dict[str, int | None] = field(default_factory=dict)
    """Rows per manifest table; None when the table is missing from the restored copy."""
    resurrected_refs: list[str] = field(default_factory=list)
    """Tombstone references of erased subjects whose key is present in the backup."""
    reason: str | None = None
    duration_seconds: float = 0.0
    dropped: bool = False

    @property
    def missing_tables(self) -> list[str]:
        """Manifest tables absent from the restored copy."""
        return [name for name, rows in self.tables.items() if rows is None]

    @property
    def empty_tables(self) -> list[str]:
        """Manifest tables present but without a row."""
        return [name for name, rows in self.tables.items() if rows == 0]

    @property
    def passed(self) -> bool:
        """Restored without error, every table present and non-empty."""
        return (
            self.reason is None
            and self.restore_exit_code == 0
            and bool(self.tables)
            and not self.missing_tables
            and not self.empty_tables
        )


def is_custom_format(path: Path) -> bool:
    """Whether the file starts like a ``pg_dump -Fc`` archive (what pg_restore can read)."""
    with path.open("rb") as handle:
        return handle.read(len(CUSTOM_FORMAT_MAGIC)) == CUSTOM_FORMAT_MAGIC


def _admin_url(server_url: str) -> URL:
    url = make_url(server_url)
    if not url.drivername.startswith("postgresql"):
        raise ValueError("restore tests need a PostgreSQL scratch server")
    admin, _ = asyncpg_server_settings(url.set(drivername="postgresql+asyncpg"))  # libpq options
    return admin


@asynccontextmanager
async def scratch_database(server_url: str, outcome: RestoreOutcome) -> AsyncIterator[URL]:
    """Create the uniquely named scratch database, yield its URL, and drop it whatever happens.

    The drop also runs when the creation itself was interrupted (the server may have finished it),
    and is shielded from a second cancellation, so a time limit never leaves a copy behind.
    """
    admin = _admin_url(server_url)
    engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
    quoted = engine.dialect.identifier_preparer.quote(outcome.database)

    async def drop() -> None:
        try:
            async with engine.connect() as connection:
                await connection.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
            outcome.dropped = True
        finally:
            await engine.dispose()

    try:
        async with engine.connect() as connection:
            await connection.execute(text(f"CREATE DATABASE {quoted}"))
        yield admin.set(database=outcome.database)
    finally:
        await asyncio.shield(drop())


def _pg_restore_command(url: URL, dump: Path) -> tuple[list[str], dict[str, str]]:
    """Arguments and environment of pg_restore; the password goes through PGPASSWORD, never argv."""
    command = ["pg_restore", "--no-owner", "--no-privileges", "--no-password", "--dbname", str(url.database)]
    if url.host:
        command += ["--host", url.host]
    if url.port:
        command += ["--port", str(url.port)]
    if url.username:
        command += ["--username", url.username]
    environment = dict(os.environ)
    if url.password is not None:
        environment["PGPASSWORD"] = str(url.password)
    return [*command, str(dump)], environment


async def _pg_restore(url: URL, dump: Path) -> int:
    """Run pg_restore; its output is discarded (it can quote rows, which are personal data)."""
    command, environment = _pg_restore_command(url, dump)
    process = await asyncio.create_subprocess_exec(
        *command,
        env=environment,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        return await process.wait()
    except asyncio.CancelledError:  # the caller's time limit: do not leave pg_restore running
        process.kill()
        await process.wait()
        raise


def _has_table(sync: Connection, name: str, schema: str | None) -> bool:
    return bool(inspect(sync).has_table(name, schema))


async def _count_rows(connection: AsyncConnection, names: Sequence[str]) -> dict[str, int | None]:
    counts: dict[str, int | None] = {}
    for name in names:
        schema, bare = split_table(name)
        exists = await connection.run_sync(_has_table, bare, schema)
        if not exists:
            counts[name] = None
            continue
        counts[name] = int(
            await connection.scalar(select(func.count()).select_from(table(bare, schema=schema))) or 0
        )
    return counts


async def find_tombstoned_keys(
    connection: AsyncConnection,
    subject_table: str,
    key_columns: Sequence[str],
    refs: Collection[str],
    reference: KeyReference,
) -> list[tuple[str, tuple[Any, ...]]]:
    """Subjects present in a database whose key's reference is tombstoned: ``(reference, key)``.

    No identifier is stored anywhere: every key of the subject table is hashed and compared with
    the tombstones. Keys are streamed in batches (server-side cursor), so memory stays bounded.
    """
    if not refs:
        return []
    wanted = set(refs)
    schema, bare = split_table(subject_table)
    query = select(*(column(c) for c in key_columns)).select_from(table(bare, schema=schema))
    found: dict[str, tuple[Any, ...]] = {}
    result = await connection.stream(query.execution_options(yield_per=KEY_BATCH))
    async for batch in result.partitions():  # one await per batch: per-row awaits cost 5x more
        for row in batch:
            key = tuple(row)
            ref = reference(key)
            if ref in wanted:
                found.setdefault(ref, key)
    return sorted(found.items())


async def _inspect_copy(
    url: URL,
    expectation: RestoreExpectation,
    outcome: RestoreOutcome,
    refs: Collection[str],
    reference: KeyReference,
) -> None:
    settings = {"server_settings": {"search_path": expectation.search_path()}}
    engine = create_async_engine(url, connect_args=settings)
    try:
        async with engine.connect() as connection:
            outcome.tables = await _count_rows(connection, expectation.tables)
            if outcome.tables.get(expectation.subject_table) is not None:
                matches = await find_tombstoned_keys(
                    connection, expectation.subject_table, expectation.key_columns, refs, reference
                )
                outcome.resurrected_refs = [ref for ref, _ in matches]
    finally:
        await engine.dispose()


async def restore_test(
    dump: DumpFile,
    server_url: str,
    expectation: RestoreExpectation,
    *,
    tombstone_refs: Collection[str],
    reference: KeyReference,
    time_limit: float,
) -> RestoreOutcome:
    """Restore ``dump`` into a fresh scratch database, inspect it, and drop it.

    Never raises for a bad backup: the outcome says what went wrong (``reason``). The scratch
    database is dropped even when pg_restore fails, times out or the inspection breaks.

    Args:
        dump: the dump file (``pg_dump -Fc``).
        server_url: a PostgreSQL URL on the scratch server (its database is only used to connect).
        expectation: the manifest's tables and subject key.
        tombstone_refs: references of every erased subject of the system.
        reference: how a key value becomes a reference (the tombstone HMAC).
        time_limit: seconds allowed for the whole restore and inspection.
    """
    outcome = RestoreOutcome(database=f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:16]}")
    started = time.monotonic()
    try:
        if not await asyncio.to_thread(is_custom_format, dump.path):
            outcome.reason = "the newest dump is not a pg_dump custom-format archive"
            return outcome
        async with asyncio.timeout(time_limit), scratch_database(server_url, outcome) as url:
            outcome.restore_exit_code = await _pg_restore(url, dump.path)
            await _inspect_copy(url, expectation, outcome, tombstone_refs, reference)
        if outcome.restore_exit_code != 0:
            outcome.reason = f"pg_restore exited with code {outcome.restore_exit_code}"
    except TimeoutError:
        outcome.reason = f"the restore test did not finish within {time_limit:g}s"
    except FileNotFoundError:
        outcome.reason = "pg_restore is not installed"
    except (SQLAlchemyError, OSError, ValueError) as exc:
        outcome.reason = f"scratch database error: {type(exc).__name__}"
    finally:
        outcome.duration_seconds = round(time.monotonic() - started, 3)
    return outcome
