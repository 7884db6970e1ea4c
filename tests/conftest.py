"""Shared fixtures: settings, database servers, a migrated service store, an HTTP client, tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.asgi import create_app
from app.config import Settings, load_settings
from app.db.store import create_store_engine, upgrade_store
from app.lib.auth import ALL_SCOPES, mint_token
from app.lib.crypto import CHAIN_OPTION, ChainKeyring
from tests.s3_server import S3Server, moto_server
from tests.servers import DatabaseServer, server_for

TEST_JWT_SECRET = "test-jwt-secret-that-is-at-least-32-bytes-long"
TEST_AUDIT_KEY = "test-audit-key-that-is-at-least-32-bytes-long"
TEST_CHAIN_KEY = "test-audit-chain-key-that-is-at-least-32-bytes"
# For tests whose generated traffic far exceeds a client's budget; rate limits have tests of their own.
UNLIMITED_RATES = "requests:write=1000000/60 consent:write=1000000/60 manifests:write=1000000/60"


def make_settings(tmp_path: Path, **overrides: str) -> Settings:
    """Settings for a test: fixed secrets, everything under ``tmp_path``, workers off by default."""
    env = {
        "LETHE_JWT_SECRET": TEST_JWT_SECRET,
        "LETHE_AUDIT_KEY": TEST_AUDIT_KEY,
        "LETHE_AUDIT_CHAIN_KEY": TEST_CHAIN_KEY,
        "LETHE_ARTIFACT_KEY": "dGVzdC1hcnRpZmFjdC1rZXktdGhhdC1pcy0zMi1ieXQ=",
        "LETHE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        "LETHE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "LETHE_WORKERS_ENABLED": "false",
        "LETHE_LOG_LEVEL": "WARNING",
    }
    env.update({f"LETHE_{k.upper()}": v for k, v in overrides.items()})
    return load_settings(env)


def store_engine_for(url: str) -> AsyncEngine:
    """An engine on a service store that appends audit events under the test chain key."""
    keyring = ChainKeyring(1, {1: TEST_CHAIN_KEY.encode()})
    return create_async_engine(url, execution_options={CHAIN_OPTION: keyring})


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[DatabaseServer]:
    """A PostgreSQL server (env, testcontainers, or skip; fail when CI requires servers)."""
    with server_for("postgresql") as server:
        yield server


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[DatabaseServer]:
    """A MariaDB/MySQL server (env, testcontainers, or skip; fail when CI requires servers)."""
    with server_for("mysql") as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3 API (moto's server) on a free loopback port, for the whole session."""
    with moto_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A service store migrated with ``alembic upgrade head``, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        server: DatabaseServer = request.getfixturevalue("postgres_server")
        url = await server.create_database("lethe_store")
    engine = create_async_engine(url)
    try:
        await upgrade_store(engine)
    finally:
        await engine.dispose()
    return url


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    """Test settings bound to the migrated store."""
    return make_settings(tmp_path, database_url=store_url)


@pytest.fixture
async def store_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A direct engine on the service store (with the chain key), for what a client cannot do."""
    engine = create_store_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture
def app(settings: Settings) -> Litestar:
    """The application under test."""
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """An HTTP client running the app's lifespan."""
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@pytest.fixture
def token(settings: Settings) -> Callable[..., str]:
    """Mint a token: ``token()`` has every scope, ``token("audit:read")`` only that one."""

    def _mint(*scopes: str, sub: str = "test-operator", client_id: str | None = None) -> str:
        return mint_token(settings, sub=sub, scopes=list(scopes or ALL_SCOPES), client_id=client_id)

    return _mint


@pytest.fixture
def auth(token: Callable[..., str]) -> Callable[..., dict[str, str]]:
    """Authorization headers: ``auth()`` for every scope, ``auth("audit:read")`` for one."""

    def _headers(*scopes: str, **kwargs: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(*scopes, **kwargs)}"}

    return _headers
