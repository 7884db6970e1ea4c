"""Restore-test building blocks that need no server: format sniffing, the pg_restore command."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from app.engine.restore import RestoreOutcome, _pg_restore_command, is_custom_format, key_hasher
from app.engine.subjects import subject_key_reference
from app.lib.crypto import hmac_ref


def test_only_custom_format_archives_are_restorable(tmp_path: Path) -> None:
    custom, plain = tmp_path / "a.dump", tmp_path / "b.sql"
    custom.write_bytes(b"PGDMP\x01\x0f\x00rest")
    plain.write_bytes(b"--\n-- PostgreSQL database dump\n")
    assert is_custom_format(custom)
    assert not is_custom_format(plain)


def test_the_password_reaches_pg_restore_through_the_environment_never_argv() -> None:
    url = make_url("postgresql+asyncpg://restorer:s3cret@db.internal:6432/lethe_restore_ab12")
    command, environment = _pg_restore_command(url, Path("/backups/shop.dump"))
    assert "s3cret" not in " ".join(command)
    assert environment["PGPASSWORD"] == "s3cret"
    assert command[:4] == ["pg_restore", "--no-owner", "--no-privileges", "--no-password"]
    assert command[command.index("--dbname") + 1] == "lethe_restore_ab12"
    assert command[command.index("--host") + 1] == "db.internal"
    assert command[command.index("--port") + 1] == "6432"
    assert command[-1] == "/backups/shop.dump"


def test_an_outcome_passes_only_with_every_table_present_and_filled() -> None:
    ok = RestoreOutcome(database="x", restore_exit_code=0, tables={"users": 3, "orders": 1})
    assert ok.passed
    assert not RestoreOutcome(database="x", restore_exit_code=0, tables={"users": 3, "orders": 0}).passed
    missing = RestoreOutcome(database="x", restore_exit_code=0, tables={"users": 3, "orders": None})
    assert (missing.passed, missing.missing_tables) == (False, ["orders"])
    assert not RestoreOutcome(database="x", restore_exit_code=1, tables={"users": 3}).passed
    assert not RestoreOutcome(database="x", restore_exit_code=0, tables={}).passed


@pytest.mark.parametrize("key", [(7,), ("a7f3-uuid-like",), (3, "eu"), (0,), ("ünïcode",)])
def test_key_references_keep_the_documented_formula(key: tuple[object, ...]) -> None:
    """Tombstones written by earlier versions must still match: HMAC of system, "key" and the key
    (composite keys joined by "."), NUL-separated, under the audit key."""
    secret = "unit-test-audit-key-of-at-least-32-bytes"
    value = key[0] if len(key) == 1 else ".".join(str(k) for k in key)
    assert key_hasher(secret, "shop")(key) == hmac_ref(secret, "shop", "key", str(value))
    assert subject_key_reference(secret, "shop", key) == hmac_ref(secret, "shop", "key", str(value))
    assert key_hasher(secret, "crm")(key) != subject_key_reference(secret, "shop", key)
