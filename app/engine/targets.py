"""Target connections: one pooled async engine per system, created lazily, with timeouts."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.config import Settings
from app.engine.check_proof import prove_checks
from app.engine.reflection_cache import ReflectionCache
from app.engine.schema_info import reflect, reflect_schema
from app.engine.surrogates import install_sqlite_functions
from app.lib.errors import TargetRefused, TargetUnavailable
from app.manifest.issues import Issue
from app.manifest.model import Connection, Manifest
from app.manifest.names import manifest_schemas
from app.manifest.schema import SchemaInfo

__all__ = (
    "ASYNC_DRIVERS",
    "TARGET_VARIABLE",
    "TargetRegistry",
    "TargetSources",
    "async_url",
    "asyncpg_server_settings",
    "resolve_url",
)

ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
    "sqlite": "sqlite+aiosqlite",
}
"""Plain URL schemes and the async driver Lethe uses for each."""

TARGET_VARIABLE = re.compile(r"LETHE_TARGET_[A-Z0-9_]+_URL")
"""Variables the operator sets up for targets by default: ``LETHE_TARGET_<SYSTEM>_URL``."""
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", ""})
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}

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


def asyncpg_server_settings(url: URL) -> tuple[URL, dict[str, str]]:
    """libpq's ``options`` query parameter as asyncpg ``server_settings``.

    ``postgresql://.../db?options=-csearch_path%3Dapp,public`` is how libpq tools set session
    settings; asyncpg has no ``options`` argument, only ``server_settings``. Every ``-c name=value``
    (or ``--name=value``) of ``options`` becomes a server setting and ``options`` leaves the URL.

    Raises:
        ValueError: ``options`` holds something other than ``-c name=value`` settings.
    """
    raw = url.query.get("options")
    if raw is None or url.get_backend_name() != "postgresql":
        return url, {}
    parts = " ".join(raw if isinstance(raw, tuple) else (raw,)).split()
    settings: dict[str, str] = {}
    pending = False
    for part in parts:
        if part == "-c" and not pending:
            pending = True
            continue
        setting = part if pending else part.removeprefix("-c") if part.startswith("-c") else None
        if setting is None and part.startswith("--"):
            setting = part[2:]
        name, equals, value = (setting or "").partition("=")
        if not equals or not name:
            raise ValueError(
                "the URL's `options` may only hold `-c name=value` settings (e.g. -csearch_path=app)"
            )
        settings[name.replace("-", "_")] = value
        pending = False
    if pending:
        raise ValueError("the URL's `options` ends with `-c` and no setting (give `-c name=value`)")
    return url.difference_update_query(["options"]), settings


class TargetSources(msgspec.Struct, frozen=True, kw_only=True):
    """Where target URLs may come from, decided by the operator, never by a manifest author.

    A manifest names a variable or a file; it is honoured only when the variable matches
    :data:`TARGET_VARIABLE` or is in ``variables``, or the file is (or lies under a directory)
    in ``files``. ``refused_variables`` (the service's own settings: the store URL, keys) are
    refused whatever the lists say, and a URL that points at the service store itself
    (``store_url``: same host, port and database, or the same SQLite file) is refused too: an
    erasure through it would delete Lethe's own rows.
    """

    variables: frozenset[str] = frozenset()
    files: tuple[str, ...] = ()
    refused_variables: frozenset[str] = frozenset()
    store_url: str | None = None

    def check_reference(self, system: str, connection: Connection) -> None:
        """Refuse a variable or file the operator did not name for targets.

        Raises:
            TargetRefused: the reference is not allowed (422 naming ``connection.env``/``file``).
        """
        if connection.env is not None:
            name = connection.env
            if name in self.refused_variables or not (
                TARGET_VARIABLE.fullmatch(name) or name in self.variables
            ):
                raise TargetRefused(
                    system,
                    "connection.env",
                    f"{name} is not a target variable (LETHE_TARGET_<SYSTEM>_URL or "
                    "LETHE_TARGET_URL_VARIABLES); the service's own settings are never targets",
                )
            return
        path = os.path.realpath(connection.file or "")
        allowed = [os.path.realpath(entry) for entry in self.files]
        if not any(path == entry or path.startswith(entry.rstrip(os.sep) + os.sep) for entry in allowed):
            raise TargetRefused(system, "connection.file", "the file is not listed in LETHE_TARGET_URL_FILES")

    def check_url(self, system: str, url: URL) -> None:
        """Refuse a target URL that reaches the service store's own database.

        Raises:
            TargetRefused: same database as the store.
        """
        if self.store_url is not None and _same_database(url, async_url(self.store_url)):
            raise TargetRefused(system, "connection", "the target is the service's own store database")


def _same_database(left: URL, right: URL) -> bool:
    backend = left.get_backend_name()
    if backend != right.get_backend_name():
        return False
    if backend == "sqlite":
        paths = [os.path.realpath(u.database or ":memory:") for u in (left, right)]
        return ":memory:" not in (left.database, right.database) and paths[0] == paths[1]
    hosts = [(u.host or "").lower() for u in (left, right)]
    same_host = hosts[0] == hosts[1] or (hosts[0] in _LOCAL_HOSTS and hosts[1] in _LOCAL_HOSTS)
    ports = [u.port or _DEFAULT_PORTS.get(backend) for u in (left, right)]
    return same_host and ports[0] == ports[1] and left.database == right.database


def resolve_url(
    system: str,
    connection: Connection,
    environ: dict[str, str] | None = None,
    sources: TargetSources | None = None,
) -> URL:
    """Read the target URL from the variable or file the manifest names.

    With ``sources``, the reference and the URL are checked against what the operator allows.

    Raises:
        TargetRefused: the reference or the URL is not allowed as a target.
        TargetUnavailable: the variable is unset, the file unreadable, or the URL invalid; the
            message names the variable or file, never the URL (it may hold a password).
    """
    if sources is not None:
        sources.check_reference(system, connection)
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
    source = connection.env or connection.file
    try:
        url = async_url(raw)
    except (ValueError, exc.ArgumentError) as error:
        raise TargetUnavailable(system, f"the URL in {source} is not a valid database URL") from error
    try:
        asyncpg_server_settings(url)
    except ValueError as error:
        raise TargetUnavailable(system, f"{error} (in {source})") from error
    if sources is not None:
        sources.check_url(system, url)
    return url


def _engine_options(url: URL, settings: Settings, server_settings: dict[str, str]) -> dict[str, Any]:
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
                    **server_settings,
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
        self._sources = _sources(settings, environ)
        self._engines: dict[str, tuple[URL, AsyncEngine]] = {}
        self._lock = asyncio.Lock()
        self.reflections = ReflectionCache()
        """Reflections of the targets, reused by workers while each catalog is unchanged."""

    @property
    def surrogate_secret(self) -> str | None:
        """The service secret keying the ``hash`` surrogate (the audit key)."""
        return self._settings.audit_key

    async def engine(self, system: str, connection: Connection) -> AsyncEngine:
        """The pooled engine of ``system`` (created lazily, replaced if its URL changed).

        Raises:
            TargetUnavailable: the URL cannot be resolved, or a SQLite file does not exist.
        """
        url = resolve_url(system, connection, self._environ, self._sources)
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
        url, server_settings = asyncpg_server_settings(url)
        engine = create_async_engine(url, **_engine_options(url, self._settings, server_settings))
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

    async def reflect(
        self, system: str, connection: Connection, schemas: Sequence[str] = (), *, every: bool = False
    ) -> SchemaInfo:
        """Reflect the target's schema (tables, columns, keys, foreign keys).

        ``schemas`` are the named schemas to reflect besides the default one and the search_path
        (``manifest_schemas``); ``every`` adds every non-system schema (scaffold).

        Raises:
            TargetUnavailable: the target cannot be reached or reflection failed on the wire.
            ManifestInvalid: a named schema does not exist (or the target is SQLite).
        """
        async with self.connect(system, connection) as conn:
            try:
                return await reflect_schema(conn, schemas, every=every)
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

    async def reflect_and_prove(self, manifest: Manifest) -> tuple[SchemaInfo, list[Issue]]:
        """Reflect the manifest's schemas once and prove its surrogates against the CHECKs over
        that same reflection (:meth:`reflect` and :meth:`prove_checks` on one connection).

        Raises:
            TargetUnavailable: the target cannot be reached or reflection failed on the wire.
            ManifestInvalid: a named schema does not exist (or the target is SQLite).
        """
        async with self.connect(manifest.system, manifest.connection) as conn:
            try:
                reflection = await reflect(conn, manifest_schemas(manifest))
                issues = await prove_checks(
                    conn, manifest, reflection.schema, self._settings.audit_key, tables=reflection.tables
                )
            except _UNAVAILABLE as error:
                raise TargetUnavailable(manifest.system, _reason(error)) from error
        return reflection.schema, issues

    async def dispose(self) -> None:
        """Close every pooled connection (called on application shutdown)."""
        async with self._lock:
            engines = [engine for _, engine in self._engines.values()]
            self._engines.clear()
        for engine in engines:
            await engine.dispose()


def _sources(settings: Settings, environ: dict[str, str] | None) -> TargetSources:
    """The operator's target sources; variables of an explicit ``environ`` are named by its caller."""
    named = settings.target_variable_names | frozenset(environ or ())
    return TargetSources(
        variables=named - settings.own_variable_names,
        files=settings.target_url_file_paths,
        refused_variables=settings.own_variable_names,
        store_url=settings.database_url,
    )


def _reason(error: BaseException) -> str:
    """A short reason without the driver's message (it may carry host names or user names)."""
    if isinstance(error, TimeoutError):
        return "connection timed out"
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        return f"{type(error.orig).__name__}"
    return type(error).__name__
