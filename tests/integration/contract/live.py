"""Lethe served on loopback by uvicorn in a thread, with the demo shop as its only target."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy.ext.asyncio import create_async_engine

from app.asgi import create_app
from app.config import Settings
from app.db.store import upgrade_store
from app.demo import DEMO_MANIFEST, SHOP_URL_VARIABLE
from app.demo.shop import create_shop
from app.lib.auth import ALL_SCOPES, mint_token
from tests.conftest import UNLIMITED_RATES, make_settings

__all__ = ("LiveServer", "serve")


@dataclass(frozen=True)
class LiveServer:
    """Where the server listens, its settings, a token with every scope, the shop's manifest."""

    base_url: str
    settings: Settings
    token: str
    manifest_yaml: bytes
    shop: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _migrate(url: str) -> None:
    engine = create_async_engine(url)
    try:
        await upgrade_store(engine)
    finally:
        await engine.dispose()


def _wait_ready(base_url: str, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and thread.is_alive():
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    msg = "the live server did not become ready in 30 s"
    raise RuntimeError(msg)


@contextmanager
def serve(home: Path, people: int = 30) -> Iterator[LiveServer]:
    """A migrated SQLite store and shop under ``home``, workers on, served until the block ends."""
    shop = home / "shop.db"
    create_shop(shop, people=people)
    previous = os.environ.get(SHOP_URL_VARIABLE)
    os.environ[SHOP_URL_VARIABLE] = f"sqlite+aiosqlite:///{shop}"
    signing_key = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    settings = make_settings(
        home,
        workers_enabled="true",
        worker_poll_seconds="0.2",
        backup_check_interval_seconds="0",
        audit_signing_key=signing_key.decode("ascii"),
        rate_limits=UNLIMITED_RATES,
    )
    asyncio.run(_migrate(settings.database_url))
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="lethe-live", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base_url, thread)
        token = mint_token(settings, sub="contract-tester", scopes=list(ALL_SCOPES), client_id="contract")
        yield LiveServer(base_url, settings, token, DEMO_MANIFEST.read_bytes(), shop)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        if previous is None:
            os.environ.pop(SHOP_URL_VARIABLE, None)
        else:
            os.environ[SHOP_URL_VARIABLE] = previous
