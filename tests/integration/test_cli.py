"""The ``lethe`` command line: development tokens and fail-fast configuration errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt

SECRET = "cli-test-secret-that-is-at-least-32-bytes"
AUDIT = "cli-test-audit-key-that-is-at-least-32-bytes"


def _lethe(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_token_is_minted_with_the_requested_scopes(tmp_path: Path) -> None:
    result = _lethe(
        "token",
        "--sub",
        "svc-billing",
        "--scope",
        "audit:read consent:read",
        env={
            "LETHE_JWT_SECRET": SECRET,
            "LETHE_AUDIT_KEY": AUDIT,
            "LETHE_AUDIT_CHAIN_KEY": AUDIT,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"], audience="lethe", issuer="lethe")
    assert claims["sub"] == "svc-billing"
    assert claims["scope"] == "audit:read consent:read"


def test_unknown_scope_is_refused(tmp_path: Path) -> None:
    result = _lethe(
        "token",
        "--sub",
        "x",
        "--scope",
        "everything",
        env={
            "LETHE_JWT_SECRET": SECRET,
            "LETHE_AUDIT_KEY": AUDIT,
            "LETHE_AUDIT_CHAIN_KEY": AUDIT,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "unknown scopes: everything" in result.stderr


def test_missing_secret_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = _lethe(
        "run",
        "--port",
        "1",
        env={
            "LETHE_AUDIT_KEY": AUDIT,
            "LETHE_AUDIT_CHAIN_KEY": AUDIT,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "LETHE_JWT_SECRET" in lines[0]
