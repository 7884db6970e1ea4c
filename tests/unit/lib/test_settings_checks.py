"""Every setting is checked at start-up; unknown LETHE_* variables are named with a suggestion."""

from __future__ import annotations

import base64

import pytest

from app.config import load_settings
from app.lib.errors import ConfigurationError
from app.lib.settings_checks import missing_keys, unknown_variables

BASE = {"LETHE_JWT_SECRET": "s" * 40, "LETHE_AUDIT_KEY": "a" * 40, "LETHE_AUDIT_CHAIN_KEY": "c" * 40}
GOOD_ARTIFACT_KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LETHE_LOG_LEVEL", "LOUD", "LETHE_LOG_LEVEL: unknown level 'LOUD'"),
        ("LETHE_APPROVAL_REQUIRED", "erasre", "unknown request kind 'erasre' (did you mean erasure?)"),
        ("LETHE_APPROVAL_REQUIRED", "erasure, acess", "unknown request kind 'acess' (did you mean access?)"),
        ("LETHE_ARTIFACT_KEY", "not base64 at all!", "LETHE_ARTIFACT_KEY is not base64"),
        ("LETHE_ARTIFACT_KEY", base64.b64encode(b"x" * 16).decode(), "must decode to 32 bytes, got 16"),
        ("LETHE_AUDIT_SIGNING_KEY", "c2hvcnQ=", "LETHE_AUDIT_SIGNING_KEY is not an Ed25519 private key"),
        ("LETHE_JWT_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nxx\n", "LETHE_JWT_PUBLIC_KEY is not a PEM"),
        ("LETHE_DATABASE_URL", "postgresql://u@db/lethe", "driver 'postgresql' is not supported"),
        ("LETHE_DATABASE_URL", "lethe.db", "LETHE_DATABASE_URL is not a database URL"),
        ("LETHE_WORKER_CONCURRENCY", "0", "LETHE_WORKER_CONCURRENCY must be above 0, got 0"),
        ("LETHE_MAX_PAGE_SIZE", "-5", "LETHE_MAX_PAGE_SIZE must be above 0, got -5"),
        ("LETHE_JWT_LEEWAY_SECONDS", "-1", "LETHE_JWT_LEEWAY_SECONDS must be at least 0, got -1"),
        ("LETHE_EXPORT_BATCH_DELAY_SECONDS", "-1", "LETHE_EXPORT_BATCH_DELAY_SECONDS must be at least 0"),
        ("LETHE_JWT_AUDIENCE", " ", "LETHE_JWT_AUDIENCE must not be empty"),
        ("LETHE_JWKS_URL", "ftp://idp/keys", "LETHE_JWKS_URL must be an https:// URL"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings({**BASE, variable: value})
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    if "KEY" in variable:
        assert value not in str(raised.value), "a secret is never echoed"


def test_good_values_pass_and_zero_is_allowed_where_it_is_the_default() -> None:
    settings = load_settings(
        {
            **BASE,
            "LETHE_LOG_LEVEL": "warning",
            "LETHE_APPROVAL_REQUIRED": "erasure rectification",
            "LETHE_ARTIFACT_KEY": GOOD_ARTIFACT_KEY.rstrip("=").replace("+", "-").replace("/", "_"),
            "LETHE_BACKUP_CHECK_INTERVAL_SECONDS": "0",
            "LETHE_DATABASE_URL": "postgresql+asyncpg://lethe@db/lethe",
        }
    )
    assert settings.approval_kinds == {"erasure", "rectification"}


def test_unknown_variables_are_named_with_the_closest_setting() -> None:
    warnings = unknown_variables(
        {
            "LETHE_LOG_LEVLE": "DEBUG",
            "LETHE_AUDIT_KEY_FIEL": "/run/x",
            "LETHE_COMPLETELY_DIFFERENT": "1",
            "LETHE_LOG_LEVEL": "INFO",
            "LETHE_AUDIT_KEY_FILE": "/run/audit",
            "LETHE_TARGET_SHOP_URL": "sqlite+aiosqlite:///shop.db",
            "PATH": "/bin",
        }
    )
    assert warnings == [
        "LETHE_AUDIT_KEY_FIEL is not a Lethe setting and is ignored (did you mean LETHE_AUDIT_KEY_FILE?)",
        "LETHE_COMPLETELY_DIFFERENT is not a Lethe setting and is ignored",
        "LETHE_LOG_LEVLE is not a Lethe setting and is ignored (did you mean LETHE_LOG_LEVEL?)",
    ]


def test_a_missing_artifact_key_is_reported_for_readiness() -> None:
    assert missing_keys(load_settings(BASE)) == [
        "LETHE_ARTIFACT_KEY is not set: requests cannot store identities nor exports"
    ]
    assert missing_keys(load_settings({**BASE, "LETHE_ARTIFACT_KEY": GOOD_ARTIFACT_KEY})) == []
