"""The audit chain key is required like the other keys; rotation entries and rate limits parse."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import load_settings
from app.lib.errors import ConfigurationError
from app.lib.ratelimit import Limit, parse_limits

BASE = {"LETHE_JWT_SECRET": "s" * 40, "LETHE_AUDIT_KEY": "a" * 40}


def test_missing_chain_key_stops_start_up_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match=r"^LETHE_AUDIT_CHAIN_KEY is not set"):
        load_settings(BASE)


def test_chain_key_from_a_file_and_previous_epochs(tmp_path: Path) -> None:
    key_file = tmp_path / "chain"
    key_file.write_text("c" * 40 + "\n")
    settings = load_settings(
        {
            **BASE,
            "LETHE_AUDIT_CHAIN_KEY_FILE": str(key_file),
            "LETHE_AUDIT_CHAIN_EPOCH": "3",
            "LETHE_AUDIT_CHAIN_PREVIOUS_KEYS": f"1:{'x' * 40} 2:{'y' * 40}",
        }
    )
    assert settings.chain_keys() == {1: b"x" * 40, 2: b"y" * 40, 3: b"c" * 40}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LETHE_AUDIT_CHAIN_KEY": "short"}, "at least 32 bytes"),
        ({"LETHE_AUDIT_CHAIN_KEY": "c" * 40, "LETHE_AUDIT_CHAIN_PREVIOUS_KEYS": "one"}, "<epoch>:<key>"),
        ({"LETHE_AUDIT_CHAIN_KEY": "c" * 40, "LETHE_AUDIT_CHAIN_EPOCH": "0"}, "1 or more"),
    ],
)
def test_bad_chain_settings_are_one_line_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings({**BASE, **env})


def test_rate_limits_parse_and_refuse_garbage() -> None:
    assert parse_limits("requests:write=60/60, consent:write=5/1") == {
        "requests:write": Limit(60, 60),
        "consent:write": Limit(5, 1),
    }
    assert parse_limits("") == {}
    with pytest.raises(ConfigurationError, match="LETHE_RATE_LIMITS"):
        parse_limits("requests:write=0/60")
