"""Mention patterns: word-bounded, escaped, the same expression for every dialect."""

from __future__ import annotations

import re
import sqlite3

import msgspec
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table
from sqlalchemy.dialects import mysql, postgresql, sqlite

from app.engine.erasure_sql import display_sql
from app.engine.scrub import (
    SCRUB_SURROGATE,
    ScrubColumn,
    install_scrub_functions,
    mention_pattern,
    scrub_statements,
)
from app.manifest.model import Manifest

HANDLE = "ada"
EMAIL = "ada.king+chat@example.com"


@pytest.mark.parametrize(
    ("value", "text", "expected"),
    [
        (HANDLE, "thanks @ada!", "thanks @[erased]!"),
        (
            HANDLE,
            "ada, adam, adalbert, ada.lovelace, x-ada, ada_b",
            "[erased], adam, adalbert, ada.lovelace, x-ada, ada_b",
        ),
        (HANDLE, "(ada) ada. ada", "([erased]) [erased]. [erased]"),
        (HANDLE, "mail ada@example.com", "mail ada@example.com"),
        (EMAIL, f"to {EMAIL}.", f"to {SCRUB_SURROGATE}."),
        (EMAIL, f"bob.{EMAIL} and {EMAIL}x and {EMAIL}.org", f"bob.{EMAIL} and {EMAIL}x and {EMAIL}.org"),
        (EMAIL, 'json {"to": "ada.king+chat@example.com"}', 'json {"to": "[erased]"}'),
        ("a.b*c(d)[e]", "x a.b*c(d)[e] y aXb*c(d)[e]", "x [erased] y aXb*c(d)[e]"),
    ],
)
def test_pattern_is_word_bounded_and_escaped(value: str, text: str, expected: str) -> None:
    assert re.sub(mention_pattern(value), SCRUB_SURROGATE, text) == expected


def test_sqlite_functions_follow_the_case_rule() -> None:
    connection = sqlite3.connect(":memory:")
    install_scrub_functions(connection)
    pattern = mention_pattern("ada@example.com")
    query = "SELECT lethe_regexp_replace(?, ?, ?, ?), lethe_regexp_match(?, ?, ?)"
    text = "Ada@Example.com and ada@example.com"
    folded = connection.execute(query, (text, pattern, "[x]", "i", text, pattern, "i")).fetchone()
    exact = connection.execute(query, (text, pattern, "[x]", "", "nobody", pattern, "")).fetchone()
    assert folded == ("[x] and [x]", 1)
    assert exact == ("Ada@Example.com and [x]", 0)


@pytest.mark.parametrize("dialect", [postgresql.dialect(), mysql.dialect(), sqlite.dialect()])
def test_plans_show_placeholders_never_values(dialect: object) -> None:
    table = Table("posts", MetaData(), Column("id", Integer, primary_key=True), Column("body", String(200)))
    spec = msgspec.convert(
        {
            "system": "chat",
            "connection": {"env": "CHAT_URL"},
            "subject": {"table": "users", "key": "id", "identities": {"email": "email"}},
            "tables": {"posts": {"columns": {"body": {"category": "user.content", "scrub": ["email"]}}}},
        },
        Manifest,
    )
    column = ScrubColumn("posts", "body", ("email",))
    shown = scrub_statements(table, spec, column, None, dialect.name)  # type: ignore[attr-defined]
    live = scrub_statements(table, spec, column, {"email": "ada@example.com"}, dialect.name)  # type: ignore[attr-defined]
    assert shown is not None
    assert live is not None
    text = display_sql(shown.update, dialect)
    assert ":scrub_pattern_0" in text
    assert "example" not in text
    assert "substr" in text.lower()  # cut to the column's length
