"""The chart's own configuration runs the real process.

The chart is rendered with the Helm engine; from the rendered objects this test takes each
container's command, args, env and envFrom, and the files its ConfigMaps, Secrets and volumes would
mount (Secret values are supplied here, as the operator's ``existingSecret`` would hold them). Mount
paths are remapped into a temporary directory, the ``lethe`` of this environment stands for the
image's entrypoint, and ``--port``/``--host`` are rewritten to a free local port. Then: the
migration hook Job's command migrates a fresh PostgreSQL store; the API Deployment's process (and
the worker Deployment's, when rendered) starts at the chart's log level and turns ready; the
ConfigMap's manifests are registered; an access request completes; the retention CronJob's command
purges what is due; every process stops cleanly on SIGTERM within its grace period.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.lib.auth import ALL_SCOPES
from app.lib.crypto import generate_signing_key_pem
from tests.conftest import TEST_AUDIT_KEY, TEST_JWT_SECRET
from tests.integration.chart_support import (
    by_kind,
    merged,
    named,
    pod_spec,
    production_values,
    render,
)
from tests.servers import DatabaseServer

LETHE = Path(sys.executable).with_name("lethe")
IMAGE_WORKDIR = "/var/lib/lethe"  # WORKDIR of the Dockerfile's runtime stage
READY_TIMEOUT = 120.0
SHOP_MANIFEST = production_values()["manifests"]["files"]["shop.yaml"]
TARGET_ENV = {
    "name": "LETHE_TARGET_SHOP_URL",
    "valueFrom": {"secretKeyRef": {"name": "shop-database", "key": "url"}},
}


def _rsa_key() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, public.decode("ascii")


RSA_KEY, RSA_PUBLIC_PEM = _rsa_key()

VALUE_SETS: dict[str, dict[str, Any]] = {
    # The defaults, plus what any install adds: a manifest and its target's URL.
    "default": {"manifests": {"files": {"shop.yaml": SHOP_MANIFEST}}, "extraEnv": [TARGET_ENV]},
    # The production-like file; tokens are checked with a public key from the Secret instead of the
    # identity provider's JWKS endpoint, which this machine cannot reach.
    "production": merged(
        production_values(), config__jwksUrl="", secrets__keys__jwtPublicKey="jwt-public-key"
    ),
}


def create_shop(path: Path) -> None:
    """The target of the manifest: one person, a recent and an expired session."""
    old = (datetime.now(UTC) - timedelta(days=400)).strftime("%Y-%m-%d %H:%M:%S")
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.executescript(
            """
            CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, full_name TEXT);
            CREATE TABLE sessions (
                id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
                ip_address TEXT, created_at TIMESTAMP NOT NULL);
            INSERT INTO users VALUES (1, 'ada@example.com', 'Ada Lovelace');
            """
        )
        connection.executemany(
            "INSERT INTO sessions VALUES (?, 1, ?, ?)", [(1, "192.0.2.1", old), (2, "192.0.2.2", now)]
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cluster:
    """What Kubernetes would provide to a pod: Secrets, ConfigMaps, volumes, a network port."""

    root: Path
    objects: list[dict[str, Any]]
    secrets: dict[tuple[str, str], str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def config_map(self, name: str) -> dict[str, str]:
        data: dict[str, str] = named(self.objects, "ConfigMap", name)["data"]
        return data

    def _secret(self, name: str, key: str) -> str:
        assert (name, key) in self.secrets, (
            f"the pod reads Secret {name}/{key}, which the test does not supply"
        )
        return self.secrets[(name, key)]

    def _volume(self, pod: str, volume: dict[str, Any]) -> Path:
        """Materialise one volume as Kubernetes would lay it out on the node."""
        if "persistentVolumeClaim" in volume:  # shared by every pod that claims it
            path = self.root / "claims" / volume["persistentVolumeClaim"]["claimName"]
            path.mkdir(parents=True, exist_ok=True)
            return path
        path = self.root / pod / volume["name"]
        path.mkdir(parents=True)
        if "configMap" in volume:
            files = self.config_map(volume["configMap"]["name"])
        elif "secret" in volume:
            secret = volume["secret"]
            items = secret.get("items") or [
                {"key": k, "path": k} for n, k in self.secrets if n == secret["secretName"]
            ]
            files = {item["path"]: self._secret(secret["secretName"], item["key"]) for item in items}
        else:
            assert "emptyDir" in volume, volume
            return path
        # The atomic-writer layout of ConfigMap and Secret volumes: files are symlinks into ..data.
        payload = path / "..2026_11_30_00_00_00.000000001"
        payload.mkdir()
        (path / "..data").symlink_to(payload.name)
        for name, text in files.items():
            (payload / name).write_text(text, encoding="utf-8")
            (path / name).symlink_to(f"..data/{name}")
        return path

    def container(self, obj: dict[str, Any]) -> tuple[list[str], dict[str, str], Path]:
        """The command line, environment and working directory of the object's one container."""
        spec = pod_spec(obj)
        (container,) = spec["containers"]
        pod = f"{obj['kind']}-{obj['metadata']['name']}".lower()
        volumes = {v["name"]: self._volume(pod, v) for v in spec["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            assert set(source) == {"configMapRef"}, source
            env.update(self.config_map(source["configMapRef"]["name"]))
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = entry["value"]
            else:
                ref = entry["valueFrom"]["secretKeyRef"]
                env[entry["name"]] = self._secret(ref["name"], ref["key"])
        for name, value in env.items():
            for mount_path in sorted(mounts, key=len, reverse=True):
                if value == mount_path or value.startswith(f"{mount_path}/"):
                    env[name] = str(mounts[mount_path]) + value.removeprefix(mount_path)
                    break
        home = self.root / pod / "home"
        home.mkdir()
        env.update(PATH=os.environ.get("PATH", "/usr/bin:/bin"), HOME=str(home))
        command = [*container["command"], *container.get("args", [])]
        assert command[0] == "lethe", "every container runs the image's entrypoint"
        return [str(LETHE), *command[1:]], env, mounts.get(IMAGE_WORKDIR, home)

    def run(self, obj: dict[str, Any], timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run a Job's or CronJob's container to completion."""
        command, env, cwd = self.container(obj)
        return subprocess.run(
            command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self, deployment: dict[str, Any]) -> tuple[subprocess.Popen[bytes], str, Path]:
        """Start a Deployment's container on a free local port; returns it, its URL and its log."""
        command, env, cwd = self.container(deployment)
        port = str(free_port())
        command[command.index("--port") + 1] = port
        command[command.index("--host") + 1] = "127.0.0.1"
        log = self.root / f"{deployment['metadata']['name']}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(command, env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process, f"http://127.0.0.1:{port}", log

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
async def shop_url(tmp_path: Path) -> str:
    path = tmp_path / "shop.db"
    create_shop(path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=sorted(VALUE_SETS))
async def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: DatabaseServer, shop_url: str
) -> AsyncIterator[Cluster]:
    """The chart rendered with one value set, and the Secrets its pods read."""
    objects = render(VALUE_SETS[request.param])
    store_url = await postgres_server.create_database("lethe_chart")
    (volume,) = [v for v in pod_spec(named(objects, "Deployment", "lethe"))["volumes"] if "secret" in v]
    secret_name = volume["secret"]["secretName"]
    values = {
        "database-url": store_url,
        "database-migration-url": store_url,
        "jwt-secret": TEST_JWT_SECRET,
        "jwt-public-key": RSA_PUBLIC_PEM,
        "audit-key": TEST_AUDIT_KEY,
        "audit-chain-key": TEST_AUDIT_KEY,
        "audit-signing-key": generate_signing_key_pem(),
        "artifact-key": base64.b64encode(os.urandom(32)).decode(),
    }
    secrets = {(secret_name, key): value for key, value in values.items()}
    secrets[("shop-database", "url")] = shop_url
    chart = Cluster(tmp_path / "cluster", objects, secrets)
    try:
        yield chart
    finally:
        chart.stop_all()


def token_for(cluster: Cluster) -> str:
    """A token the rendered settings accept: HS256 with the Secret's key, or RS256 for the public key."""
    settings = cluster.config_map("lethe")
    now = int(time.time())
    claims = {
        "sub": "chart-test",
        "aud": settings["LETHE_JWT_AUDIENCE"],
        "iss": settings["LETHE_JWT_ISSUER"],
        "iat": now,
        "exp": now + 600,
        "scope": " ".join(ALL_SCOPES),
    }
    if settings["LETHE_JWT_ALGORITHMS"] == "RS256":
        return jwt.encode(claims, RSA_KEY, algorithm="RS256")
    return jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")


async def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"exited {process.returncode}: {log.read_text()[-3000:]}"
            with contextlib.suppress(httpx.TransportError):
                response = await client.get("/readyz")
                if response.status_code == 200:
                    return
            await asyncio.sleep(0.5)
    pytest.fail(f"{url}/readyz never answered 200: {log.read_text()[-3000:]}")


async def complete_access_request(url: str, token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        manifests = (await client.get("/v1/manifests")).json()
        assert "shop" in str(manifests), manifests
        created = await client.post(
            "/v1/requests", json={"kind": "access", "identities": {"email": "ada@example.com"}}
        )
        assert created.status_code == 202, created.text
        request_id = created.json()["id"]
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            state = (await client.get(f"/v1/requests/{request_id}")).json()
            if state["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.5)
        assert state["status"] == "completed", state
        export = await client.get(f"/v1/requests/{request_id}/export", params={"format": "json"})
        assert export.status_code == 200, export.text
        document: dict[str, Any] = export.json()
        return document


def stop_within_grace(process: subprocess.Popen[bytes], deployment: dict[str, Any], log: Path) -> None:
    """SIGTERM, as the kubelet sends it: the process must exit 0 inside the grace period."""
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{deployment['metadata']['name']} did not stop within {grace}s")
    # uvicorn shuts down gracefully, then re-raises the signal: the kubelet sees "terminated by SIGTERM".
    assert code in (0, -signal.SIGTERM), log.read_text()[-3000:]
    assert '"Application shutdown complete."' in log.read_text(encoding="utf-8")


def json_lines(log: Path) -> Iterator[str]:
    for line in log.read_text(encoding="utf-8").splitlines():
        assert line.startswith("{"), f"not a JSON log line: {line[:200]}"
        assert line.endswith("}"), f"not a JSON log line: {line[:200]}"
        yield line


async def test_the_chart_configuration_runs_the_real_processes(cluster: Cluster, shop_url: str) -> None:
    migrate = cluster.run(named(cluster.objects, "Job", "lethe-migrate"))
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert cluster.config_map("lethe")["LETHE_LOG_LEVEL"] == "INFO"

    # The API first (it registers the ConfigMap's manifests), then the CronJob's purge, then the
    # worker Deployment: in production the API runs no workers, so each piece is seen on its own.
    api = named(cluster.objects, "Deployment", "lethe")
    started = [(api, *cluster.start(api))]
    await wait_ready(*started[0][1:])
    api_url = started[0][2]

    crons = by_kind(cluster.objects, "CronJob")
    for cron in crons:
        result = cluster.run(cron)
        assert result.returncode == 0, result.stdout + result.stderr
        assert '"status":"completed"' in result.stdout.replace(" ", ""), result.stdout
        path = shop_url.removeprefix("sqlite+aiosqlite:///")
        with contextlib.closing(sqlite3.connect(path)) as connection:
            assert connection.execute("SELECT id FROM sessions").fetchall() == [(2,)]

    for worker in by_kind(cluster.objects, "Deployment"):
        if worker is not api:
            started.append((worker, *cluster.start(worker)))
            await wait_ready(*started[-1][1:])
    document = await complete_access_request(api_url, token_for(cluster))
    assert "ada@example.com" in str(document)

    for deployment, process, _, log in started:
        stop_within_grace(process, deployment, log)
        lines = list(json_lines(log))
        assert any('"manifest file loaded"' in line for line in lines), (
            "manifests are registered by every pod"
        )
        assert not any("color_message" in line or "\x1b[" in line for line in lines)
        assert not any("ada@example.com" in line for line in lines), "an identity reached the log"
    jobs = [line for _, _, _, log in started for line in json_lines(log) if '"request job finished"' in line]
    assert len(jobs) == 1, "the process that ran the request logs its outcome once"
    assert '"kind": "access", "attempt": 1, "status": "completed"' in jobs[0]
    assert '"systems": {"shop": {"status": "completed", "not_found": false, "rows": {' in jobs[0]
