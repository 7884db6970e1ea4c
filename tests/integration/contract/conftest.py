"""A live Lethe on loopback (uvicorn in a thread) with the demo shop as its target."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import create_async_engine

from app.asgi import create_app
from app.config import Settings
from app.db.store import upgrade_store
from app.demo import SHOP_URL_VARIABLE
from app.demo.shop import create_shop
from app.lib.auth import ALL_SCOPES, mint_token
from tests.conftest import make_settings

__all__ = ("LiveServer",)


@dataclass(frozen=True)
class LiveServer:
    """Where the server listens, its settings, and a token with every scope."""

    base_url: str
    settings: Settings
    token: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Lethe with workers on, a migrated SQLite store and a 30-person shop, on 127.0.0.1."""
    home = tmp_path_factory.mktemp("live")
    shop = home / "shop.db"
    create_shop(shop, people=30)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv(SHOP_URL_VARIABLE, f"sqlite+aiosqlite:///{shop}")
    settings = make_settings(
        home,
        workers_enabled="true",
        worker_poll_seconds="0.2",
        backup_check_interval_seconds="0",
    )
    asyncio.run(_migrate(settings.database_url))
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    _wait_ready(base_url)
    token = mint_token(settings, sub="contract-tester", scopes=list(ALL_SCOPES), client_id="contract")
    try:
        yield LiveServer(base_url=base_url, settings=settings, token=token)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        monkeypatch.undo()


async def _migrate(url: str) -> None:
    engine = create_async_engine(url)
    try:
        await upgrade_store(engine)
    finally:
        await engine.dispose()


def _wait_ready(base_url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail("the live server did not become ready in 20 s")


def shop_manifest_yaml() -> bytes:
    """The demo shop's full manifest, as a caller would send it."""
    from app.demo import DEMO_MANIFEST

    return Path(DEMO_MANIFEST).read_bytes()
