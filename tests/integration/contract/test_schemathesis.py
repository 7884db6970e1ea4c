"""Schemathesis, every check, against a live Lethe: the contract and the server agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.contract.live import LiveServer

ROOT = Path(__file__).resolve().parents[3]
MAX_EXAMPLES = int(os.environ.get("LETHE_SCHEMATHESIS_EXAMPLES", "20"))
"""Examples per operation and phase; 20 keeps the run near a minute on two cores."""


def test_schemathesis_finds_no_failure(live_server: LiveServer, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            str(ROOT / "openapi" / "openapi.json"),
            "--url",
            live_server.base_url,
            "--header",
            f"Authorization: Bearer {live_server.token}",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "20261130",
            "--generation-database",
            "none",
            "--workers",
            "1",  # sequential: concurrent writers on the embedded SQLite store contend for its lock
            "--request-timeout",
            "30",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary + result.stderr[-2000:]
    assert " passed" in summary, summary
