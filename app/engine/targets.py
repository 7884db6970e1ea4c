"""Target connections: one pooled async engine per system, created lazily, with timeouts."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.config import Settings
from app.engine.check_proof import prove_checks
from app.engine.reflection import reflect_schema
from app.engine.surrogates import install_sqlite_functions
from app.lib.errors import TargetUnavailable
from app.manifest.issues import Issue
from app.manifest.model import Connection, Manifest
from app.manifest.schema import SchemaInfo

__all__ = ("ASYNC_DRIVERS", "TargetRegistry", "async_url", "resolve_url")

ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
    "sqlite": "sqlite+aiosqlite",
}
"""Plain URL schemes and the async driver Lethe uses for each."""

_UNAVAILABLE = (OSError, TimeoutError, exc.OperationalError, exc.InterfaceError, exc.DBAPIError)


def async_url(url: str) -> URL:
    """``postgresql://...`` -> ``postgresql+asyncpg://...`` (an explicit driver is kept).

    Raises:
        ValueError: the URL does not parse or names an unsupported database.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in ASYNC_DRIVERS:
        raise ValueError(f"unsupported target database '{backend}' (PostgreSQL, MySQL/MariaDB, SQLite)")
    if "+" in parsed.drivername:
        return parsed
    return parsed.set(drivername=ASYNC_DRIVERS[backend])


def resolve_url(system: str, connection: Connection, environ: dict[str, str] | None = None) -> URL:
    """Read the target URL from the variable or file the manifest names.

    Raises:
        TargetUnavailable: the variable is unset, the file unreadable, or the URL invalid; the
            message names the variable or file, never the URL (it may hold a password).
    """
    env = os.environ if environ is None else environ
    if connection.env is not None:
        raw = env.get(connection.env)
        if not raw:
            raise TargetUnavailable(system, f"environment variable {connection.env} is not set")
    else:
        assert connection.file is not None  # noqa: S101 - Connection guarantees one of the two
        try:
            raw = Path(connection.file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise TargetUnavailable(system, f"cannot read {connection.file}: {error.strerror}") from error
    try:
        return async_url(raw)
    except (ValueError, exc.ArgumentError) as error:
        source = connection.env or connection.file
        raise TargetUnavailable(system, f"the URL in {source} is not a valid database URL") from error


def _engine_options(url: URL, settings: Settings) -> dict[str, Any]:
    connect = settings.target_connect_timeout_seconds
    statement_ms = int(settings.target_statement_timeout_seconds * 1000)
    backend = url.get_backend_name()
    if backend == "postgresql":
        return {
            "pool_pre_ping": True,
            "connect_args": {
                "timeout": connect,
                "command_timeout": settings.target_statement_timeout_seconds,
                "server_settings": {
                    "statement_timeout": str(statement_ms),
                    "application_name": "lethe",
                },
            },
        }
    if backend == "mysql":
        return {
            "pool_pre_ping": True,
            "pool_recycle": 1800,
            "connect_args": {"connect_timeout": connect},
        }
    return {"connect_args": {"timeout": connect}}


def _mysql_statement_timeout(seconds: float) -> Any:
    def on_connect(dbapi_connection: Any, _: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"SET SESSION max_statement_time = {float(seconds)}")  # MariaDB
        except Exception:
            cursor.execute(f"SET SESSION max_execution_time = {int(seconds * 1000)}")
        finally:
            cursor.close()

    return on_connect


def _sqlite_foreign_keys(dbapi_connection: Any, _: Any) -> None:
    """Foreign keys enforced, and the SQL functions surrogates use (``hash``, ``uuid``)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    install_sqlite_functions(dbapi_connection)


class TargetRegistry:
    """The engines of every target system, keyed by system and URL.

    An engine is created on first use from the manifest's connection reference, pooled, and
    replaced when the URL behind the reference changes; :meth:`dispose` closes them all (app
    shutdown). Every failure to reach a target is a :class:`TargetUnavailable` naming the system.
    SQLite targets get ``PRAGMA foreign_keys=ON`` so erasure meets the same constraints as
    production databases; PostgreSQL and MariaDB get a statement timeout.
    """

    def __init__(self, settings: Settings, environ: dict[str, str] | None = None) -> None:
        self._settings = settings
        self._environ = environ
        self._engines: dict[str, tuple[URL, AsyncEngine]] = {}
        self._lock = asyncio.Lock()

    @property
    def surrogate_secret(self) -> str | None:
        """The service secret keying the ``hash`` surrogate (the audit key)."""
        return self._settings.audit_key

    async def engine(self, system: str, connection: Connection) -> AsyncEngine:
        """The pooled engine of ``system`` (created lazily, replaced if its URL changed).

        Raises:
            TargetUnavailable: the URL cannot be resolved, or a SQLite file does not exist.
        """
        url = resolve_url(system, connection, self._environ)
        async with self._lock:
            current = self._engines.get(system)
            if current is not None and current[0] == url:
                return current[1]
            engine = self._create(system, url)
            self._engines[system] = (url, engine)
        if current is not None:
            await current[1].dispose()
        return engine

    def _create(self, system: str, url: URL) -> AsyncEngine:
        if url.get_backend_name() == "sqlite":
            database = url.database or ""
            if database and database != ":memory:" and not Path(database).exists():
                raise TargetUnavailable(system, "the SQLite database file does not exist")
        engine = create_async_engine(url, **_engine_options(url, self._settings))
        if url.get_backend_name() == "mysql":
            hook = _mysql_statement_timeout(self._settings.target_statement_timeout_seconds)
            event.listen(engine.sync_engine, "connect", hook)
        elif url.get_backend_name() == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_foreign_keys)
        return engine

    @asynccontextmanager
    async def connect(self, system: str, connection: Connection) -> AsyncIterator[AsyncConnection]:
        """A connection to the target (no transaction is begun for you).

        Raises:
            TargetUnavailable: connecting failed or took longer than the connect timeout.
        """
        engine = await self.engine(system, connection)
        timeout = self._settings.target_connect_timeout_seconds + 1
        try:
            async with asyncio.timeout(timeout):
                conn = await engine.connect()
        except _UNAVAILABLE as error:
            raise TargetUnavailable(system, _reason(error)) from error
        try:
            yield conn
        finally:
            await conn.close()

    async def reflect(self, system: str, connection: Connection) -> SchemaInfo:
        """Reflect the target's schema (tables, columns, keys, foreign keys).

        Raises:
            TargetUnavailable: the target cannot be reached or reflection failed on the wire.
        """
        async with self.connect(system, connection) as conn:
            try:
                return await reflect_schema(conn)
            except _UNAVAILABLE as error:
                raise TargetUnavailable(system, _reason(error)) from error

    async def prove_checks(self, manifest: Manifest, schema: SchemaInfo) -> list[Issue]:
        """Prove in the target that erasure's surrogates satisfy every CHECK (see
        :func:`app.engine.check_proof.prove_checks`); nothing is written.

        Raises:
            TargetUnavailable: the target cannot be reached.
        """
        async with self.connect(manifest.system, manifest.connection) as conn:
            try:
                return await prove_checks(conn, manifest, schema, self._settings.audit_key)
            except _UNAVAILABLE as error:
                raise TargetUnavailable(manifest.system, _reason(error)) from error

    async def dispose(self) -> None:
        """Close every pooled connection (called on application shutdown)."""
        async with self._lock:
            engines = [engine for _, engine in self._engines.values()]
            self._engines.clear()
        for engine in engines:
            await engine.dispose()


def _reason(error: BaseException) -> str:
    """A short reason without the driver's message (it may carry host names or user names)."""
    if isinstance(error, TimeoutError):
        return "connection timed out"
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        return f"{type(error.orig).__name__}"
    return type(error).__name__
