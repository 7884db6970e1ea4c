"""A real S3 API on loopback for tests and benchmarks: moto's server in a child process.

``moto[server]`` is a dev dependency; the server listens on a free loopback port, speaks the S3
REST protocol (multipart uploads, ranged GETs, batch deletes) and keeps objects in memory.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

__all__ = ("S3Server", "moto_server")

ACCESS_KEY = "lethe-test-access-key"
SECRET_KEY = "lethe-test-secret-key"  # moto accepts any credentials
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def create_bucket(self) -> str:
        """A fresh, uniquely named bucket."""
        name = f"lethe-{uuid.uuid4().hex[:12]}"
        httpx.put(f"{self.endpoint}/{name}", timeout=10).raise_for_status()
        return name

    def pending_uploads(self, bucket: str) -> int:
        """Multipart uploads started in ``bucket`` and neither completed nor aborted."""
        listed = httpx.get(f"{self.endpoint}/{bucket}?uploads", timeout=10)
        listed.raise_for_status()
        return listed.content.count(b"<Upload>")

    def settings(self, bucket: str, prefix: str = "exports") -> dict[str, str]:
        """``make_settings`` overrides selecting this server's ``bucket`` as artifact storage."""
        return {
            "artifact_storage": "s3",
            "artifact_s3_bucket": bucket,
            "artifact_s3_prefix": prefix,
            "artifact_s3_endpoint_url": self.endpoint,
            "artifact_s3_region": REGION,
            "artifact_s3_access_key_id": ACCESS_KEY,
            "artifact_s3_secret_access_key": SECRET_KEY,
        }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def moto_server() -> Iterator[S3Server]:
    """Start moto's S3 server on a free loopback port; stop it on exit."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        process.terminate()
        process.wait(timeout=10)
