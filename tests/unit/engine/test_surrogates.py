"""Surrogates compile per dialect to set-based SQL and refuse what a column cannot honour."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite

from app.engine.surrogates import (
    SurrogateContext,
    SurrogateError,
    hash_key_from_secret,
    parse_surrogate,
    placeholder_bind,
    resolved_surrogate,
    surrogate_expression,
)
from app.manifest.model import Surrogate

DIALECTS = {"postgresql": postgresql.dialect(), "mysql": mysql.dialect(), "sqlite": sqlite.dialect()}
KEY = hash_key_from_secret("unit-test-secret-unit-test-secret")

users = Table(
    "users",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("email", String(24), nullable=False, unique=True),
    Column("contact_email", String(255), nullable=False),
    Column("name", String(5), nullable=False),
    Column("bio", String, nullable=True),
    Column("age", Integer, nullable=False),
    Column("born", Date),
    Column("seen", DateTime(timezone=True)),
    Column("active", Boolean, nullable=False),
    Column("prefs", JSON, nullable=False),
    Column("ref", Uuid, nullable=False),
)


def _ctx(column: str, dialect: str = "postgresql") -> SurrogateContext:
    unique = bool(users.c[column].unique)
    return SurrogateContext(
        users, column, ("id",), dialect, unique=unique, hash_key=KEY, secret_bind=placeholder_bind
    )


def _sql(column: str, spec: str | None, dialect: str) -> str:
    statement = update(users).values({column: surrogate_expression(_ctx(column, dialect), spec)})
    return str(statement.compile(dialect=DIALECTS[dialect], compile_kwargs={"literal_binds": True}))


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_short_unique_email_falls_back_to_the_compact_form(dialect: str) -> None:
    sql = _sql("email", None, dialect)
    assert "CASE WHEN" in sql
    assert "'erased-'" in sql
    assert "'@x.invalid'" in sql
    assert "<= 1" in sql  # 24 - len('erased-' '@invalid.example')


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_wide_email_column_uses_the_long_form_only(dialect: str) -> None:
    sql = _sql("contact_email", "email", dialect)
    assert "CASE" not in sql
    assert "'@invalid.example'" in sql


@pytest.mark.parametrize(
    ("dialect", "marker"),
    [("postgresql", "sha256("), ("mysql", "sha2("), ("sqlite", "lethe_hmac_sha256(")],
)
def test_hash_is_computed_by_the_database(dialect: str, marker: str) -> None:
    sql = _sql("bio", "hash", dialect)
    assert marker in sql
    assert ":surrogate_hash_inner_pad" in sql  # the key never shows in a plan
    assert "hmac(" not in sql  # pgcrypto is never needed


def test_uuid_is_derived_from_the_key_on_postgresql() -> None:
    sql = _sql("ref", None, "postgresql")
    assert "md5(" in sql
    assert "'-3'" in sql  # the version nibble
    assert "AS UUID" in sql


def test_json_default_is_an_empty_object_per_dialect() -> None:
    assert "'{}'" in _sql("prefs", None, "mysql")
    assert "CAST('{}' AS JSON)" in _sql("prefs", None, "postgresql")
    assert "'{}'" in _sql("prefs", None, "sqlite")


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("email", "email"),
        ("name", "redacted"),
        ("age", "zero"),
        ("born", "epoch"),
        ("seen", "epoch"),
        ("active", "false"),
        ("prefs", "json"),
        ("ref", "uuid"),
    ],
)
def test_type_aware_defaults(column: str, expected: str) -> None:
    assert resolved_surrogate(_ctx(column), None).kind == expected


def test_redacted_fits_the_column_length() -> None:
    assert "'redac'" in _sql("name", "redacted", "sqlite")


@pytest.mark.parametrize(
    ("column", "spec", "message"),
    [
        ("age", "null", "NOT NULL"),
        ("email", "constant:x", "is UNIQUE"),
        ("name", "constant:toolong", "holds at most 5 characters"),
        ("age", "constant:abc", "constant 'abc': type integer expects an integer"),
        ("age", "email", r"\(integer\) cannot take the `email` surrogate"),
        ("bio", "zero", r"\(string\) cannot take the `zero` surrogate"),
    ],
)
def test_refusals_name_the_column(column: str, spec: str, message: str) -> None:
    with pytest.raises(SurrogateError, match=message) as caught:
        surrogate_expression(_ctx(column), spec)
    assert f"users.{column}" in str(caught.value)


def test_a_unique_column_too_short_for_any_form_is_refused() -> None:
    table: Any = Table(
        "t", MetaData(), Column("id", Integer, primary_key=True), Column("e", String(8), unique=True)
    )
    with pytest.raises(SurrogateError, match="holds at most 8 characters"):
        surrogate_expression(SurrogateContext(table, "e", ("id",), "sqlite", unique=True), "email")


def test_parse_surrogate() -> None:
    assert parse_surrogate(None) is None
    assert parse_surrogate("constant:n/a:b") == Surrogate(kind="constant", value="n/a:b")
    with pytest.raises(SurrogateError, match="unknown surrogate"):
        parse_surrogate("shuffle")


def test_hash_key_digest_is_hmac_sha256() -> None:
    import hashlib
    import hmac

    assert KEY.digest("x") == hmac.new(KEY.key, b"x", hashlib.sha256).hexdigest()
