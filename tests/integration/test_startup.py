"""``lethe run`` as an operator starts it: ready with manifests at the default log level, or out fast."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from app.config import Settings
from tests.conftest import TEST_AUDIT_KEY, TEST_CHAIN_KEY, TEST_JWT_SECRET, make_settings

LETHE = Path(sys.executable).with_name("lethe")
MANIFEST = """\
system: shop
connection: {env: LETHE_TARGET_SHOP_URL}
subject: {table: users, key: id, identities: {email: email}}
tables:
  users:
    strategy: delete
    columns:
      email: {category: user.contact.email}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """An operator's environment: secrets and a store; no LETHE_LOG_LEVEL (the default, INFO)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
    return {
        **base,
        "LETHE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        "LETHE_JWT_SECRET": TEST_JWT_SECRET,
        "LETHE_AUDIT_KEY": TEST_AUDIT_KEY,
        "LETHE_AUDIT_CHAIN_KEY": TEST_CHAIN_KEY,
        "LETHE_ARTIFACT_KEY": base64.b64encode(os.urandom(32)).decode(),
        "LETHE_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        **settings,
    }


def test_run_with_a_manifests_dir_at_the_default_level_turns_ready(tmp_path: Path) -> None:
    env = _environment(
        tmp_path, LETHE_MANIFESTS_DIR=str(tmp_path / "manifests"), LETHE_WORKERS_ENABLD="false"
    )
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "shop.yaml").write_text(MANIFEST, encoding="utf-8")
    migrate = [str(LETHE), "database", "upgrade", "--no-prompt"]
    subprocess.run(migrate, env=env, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    port = _free_port()
    log = tmp_path / "lethe.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(LETHE), "run", "--port", str(port)], env=env, cwd=tmp_path, stdout=sink, stderr=sink
        )
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and process.poll() is None and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
            except httpx.TransportError:
                time.sleep(0.3)
        assert status == 200, log.read_text()[-3000:]
    finally:
        process.terminate()
        process.wait(timeout=60)
    text = log.read_text()
    assert (
        '"manifest file loaded", "file": "shop.yaml", "system": "shop", "version": 1, "created": true' in text
    )
    # The misspelled variable is named with the setting it was probably meant to be.
    assert (
        "LETHE_WORKERS_ENABLD is not a Lethe setting and is ignored (did you mean LETHE_WORKERS_ENABLED?)"
        in text
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LETHE_APPROVAL_REQUIRED", "erasre"),
        ("LETHE_LOG_LEVEL", "verbose"),
        ("LETHE_ARTIFACT_KEY", "c2hvcnQ="),
        ("LETHE_MANIFESTS_DIR", "/nonexistent/manifests"),
    ],
)
def test_run_with_a_broken_setting_exits_within_5_seconds_naming_it(
    tmp_path: Path, variable: str, value: str
) -> None:
    env = _environment(tmp_path, **{variable: value})
    started = time.monotonic()
    result = subprocess.run(
        [str(LETHE), "run", "--port", str(_free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert elapsed < 5, f"took {elapsed:.1f}s"
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("lethe: ")
    assert variable in last


async def test_readyz_is_503_while_a_needed_key_is_missing(tmp_path: Path, settings: Settings) -> None:
    without_key = make_settings(tmp_path, database_url=settings.database_url, artifact_key="")
    app: Litestar = create_app(without_key)
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert "LETHE_ARTIFACT_KEY is not set" in response.json()["detail"]


def test_a_failure_during_start_up_exits_with_one_line_instead_of_hanging(tmp_path: Path) -> None:
    """The first manifest opens store connections, the second is invalid: exit, naming the file."""
    directory = tmp_path / "manifests"
    directory.mkdir()
    (directory / "a-shop.yaml").write_text(MANIFEST, encoding="utf-8")
    (directory / "b-broken.yaml").write_text(MANIFEST.replace("tables:", "tabels:"), encoding="utf-8")
    env = _environment(tmp_path, LETHE_MANIFESTS_DIR=str(directory))
    migrate = [str(LETHE), "database", "upgrade", "--no-prompt"]
    subprocess.run(migrate, env=env, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    lines = []
    started = None
    with subprocess.Popen(
        [str(LETHE), "run", "--port", str(_free_port())],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        # Timed from the start of the lifespan (the imports before it are no hang) to the exit.
        assert process.stderr is not None
        for line in process.stderr:
            if line.strip():
                lines.append(line.rstrip("\n"))
            if started is None and "Waiting for application startup." in line:
                started = time.monotonic()
        returncode = process.wait(timeout=60)
    assert started is not None, "\n".join(lines[-5:])
    elapsed = time.monotonic() - started
    assert returncode == 2
    assert elapsed < 5, f"took {elapsed:.1f}s after the lifespan began"
    assert '"Application startup failed. Exiting."' in lines[-2]
    assert lines[-1].startswith("lethe: configuration error: LETHE_MANIFESTS_DIR: b-broken.yaml: ")
