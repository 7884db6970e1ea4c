"""Settings: environment parsing, ``_FILE`` secrets, fail-fast on missing keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import load_settings
from app.lib.errors import ConfigurationError

SECRET = "s" * 40
AUDIT = "a" * 40


def test_missing_jwt_key_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="LETHE_JWT_SECRET"):
        load_settings({"LETHE_AUDIT_KEY": AUDIT, "LETHE_AUDIT_CHAIN_KEY": AUDIT})


def test_missing_audit_key_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="LETHE_AUDIT_KEY"):
        load_settings({"LETHE_JWT_SECRET": SECRET})


def test_short_hs256_secret_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        load_settings({"LETHE_JWT_SECRET": "short", "LETHE_AUDIT_KEY": AUDIT, "LETHE_AUDIT_CHAIN_KEY": AUDIT})


def test_secrets_are_read_from_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "jwt"
    secret_file.write_text(SECRET + "\n")
    settings = load_settings(
        {"LETHE_JWT_SECRET_FILE": str(secret_file), "LETHE_AUDIT_KEY": AUDIT, "LETHE_AUDIT_CHAIN_KEY": AUDIT}
    )
    assert settings.jwt_secret == SECRET


def test_unreadable_secret_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="LETHE_AUDIT_KEY_FILE"):
        load_settings({"LETHE_JWT_SECRET": SECRET, "LETHE_AUDIT_KEY_FILE": str(tmp_path / "nope")})


def test_values_are_typed_and_defaults_hold() -> None:
    settings = load_settings(
        {
            "LETHE_JWT_SECRET": SECRET,
            "LETHE_AUDIT_KEY": AUDIT,
            "LETHE_AUDIT_CHAIN_KEY": AUDIT,
            "LETHE_WORKERS_ENABLED": "false",
            "LETHE_MAX_BODY_BYTES": "2048",
            "LETHE_JWT_ALGORITHMS": "HS256, RS256",
        }
    )
    assert settings.workers_enabled is False
    assert settings.max_body_bytes == 2048
    assert settings.algorithms == ["HS256", "RS256"]
    assert settings.database_url.startswith("sqlite+aiosqlite:///.lethe/")


def test_malformed_value_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="LETHE_MAX_BODY_BYTES"):
        load_settings(
            {
                "LETHE_JWT_SECRET": SECRET,
                "LETHE_AUDIT_KEY": AUDIT,
                "LETHE_AUDIT_CHAIN_KEY": AUDIT,
                "LETHE_MAX_BODY_BYTES": "lots",
            }
        )


def test_unsupported_algorithm_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="LETHE_JWT_ALGORITHMS"):
        load_settings(
            {
                "LETHE_JWT_SECRET": SECRET,
                "LETHE_AUDIT_KEY": AUDIT,
                "LETHE_AUDIT_CHAIN_KEY": AUDIT,
                "LETHE_JWT_ALGORITHMS": "none",
            }
        )


def test_demo_mode_persists_its_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = load_settings({"LETHE_DEMO": "1"})
    second = load_settings({"LETHE_DEMO": "1"})
    assert first.jwt_secret == second.jwt_secret
    assert first.audit_key == second.audit_key
    assert (tmp_path / ".lethe" / "demo-secrets.json").stat().st_mode & 0o077 == 0
