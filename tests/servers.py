"""Database servers for integration tests: named by env, else testcontainers, else skipped.

Each test session creates its own uniquely named databases and drops them at the end, because the
servers are shared and keep state between runs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

__all__ = ("DatabaseServer", "server_for")

_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "mysql": "mysql+asyncmy"}


@dataclass
class DatabaseServer:
    """A reachable server on which the session may create and drop databases."""

    kind: str  # "postgresql" | "mysql"
    admin_url: str  # async URL of a maintenance database
    created: list[str] = field(default_factory=list)

    def url_for(self, name: str) -> str:
        """Async SQLAlchemy URL of database ``name`` on this server."""
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    async def create_database(self, prefix: str = "lethe_test") -> str:
        """Create a fresh, uniquely named database and return its async URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        engine = create_async_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(f"CREATE DATABASE {name}"))
        finally:
            await engine.dispose()
        self.created.append(name)
        return self.url_for(name)

    async def drop_all(self) -> None:
        """Drop every database this session created (connections are terminated first)."""
        engine = create_async_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                if self.kind == "mysql":  # databases may reference each other (named schemas)
                    await connection.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
                for name in self.created:
                    if self.kind == "postgresql":
                        await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    else:
                        await connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        finally:
            await engine.dispose()
        self.created.clear()


def _async_url(url: str, kind: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername=_ASYNC_DRIVERS[kind]).render_as_string(hide_password=False)


def _docker_answers() -> bool:
    """Whether a Docker engine answers ``GET /_ping`` (a plain socket: the docker client leaks
    its socket when the engine is absent, and ``filterwarnings = error`` turns that into a
    failure of whatever test runs next)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: Any = host.removeprefix("unix://")
        else:
            parsed = urlsplit(host.replace("tcp://", "http://", 1))
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (parsed.hostname or "127.0.0.1", parsed.port or 2375)
        with probe:
            probe.settimeout(3)
            probe.connect(address)
            probe.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in probe.recv(64)
    except OSError:
        return False


def _unavailable(kind: str, env_var: str) -> None:
    reason = f"{kind} tests need {env_var} or a Docker engine for testcontainers; neither is available"
    if os.environ.get("LETHE_TEST_REQUIRE_SERVERS"):
        pytest.fail(reason + " (LETHE_TEST_REQUIRE_SERVERS is set: not skipping)")
    pytest.skip(reason)


async def _check_reachable(url: str, kind: str, env_var: str) -> None:
    engine = create_async_engine(url, connect_args={"timeout": 5} if kind == "postgresql" else {})
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        message = f"{env_var} is set but the {kind} server does not answer: {type(exc).__name__}: {exc}"
        pytest.fail(message)
    finally:
        await engine.dispose()


def _run_aside(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine on a fresh loop in another thread (session fixtures are synchronous)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coroutine).result()


@contextmanager
def server_for(kind: str) -> Iterator[DatabaseServer]:
    """Yield a server of ``kind`` for the session, or skip/fail with a reason."""
    env_var = {"postgresql": "LETHE_TEST_POSTGRES_URL", "mysql": "LETHE_TEST_MYSQL_URL"}[kind]
    if url := os.environ.get(env_var):
        admin = _async_url(url, kind)
        _run_aside(_check_reachable(admin, kind, env_var))
        server = DatabaseServer(kind=kind, admin_url=admin)
        try:
            yield server
        finally:
            _run_aside(server.drop_all())
        return
    if not _docker_answers():
        _unavailable(kind, env_var)
    if kind == "postgresql":
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine") as container:
            yield DatabaseServer(kind=kind, admin_url=_async_url(container.get_connection_url(), kind))
        return
    from testcontainers.mysql import MySqlContainer

    with MySqlContainer("mariadb:11", username="root", password="test") as container:
        yield DatabaseServer(kind=kind, admin_url=_async_url(container.get_connection_url(), kind))
