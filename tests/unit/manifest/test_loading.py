"""Decoding manifests: YAML and JSON agree, and every error names the offending key path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.lib.errors import ManifestInvalid
from app.manifest.durations import parse_duration
from app.manifest.loading import content_hash, load_manifest, to_yaml
from app.manifest.model import Surrogate

VALID = """
system: shop
connection: {env: LETHE_TARGET_SHOP_URL}
subject:
  table: users
  key: id
  identities: {email: email, user_id: id}
tables:
  orders:
    strategy: retain
    retention: {legal_basis: tax law, duration: P10Y}
    link: {path: [{from: user_id, to: users}]}
    columns:
      delivery_note: {category: user.contact.note, strategy: anonymize, surrogate: "null"}
      born: {category: user.demographic.date_of_birth, surrogate: {kind: constant, value: 1900-01-01}}
retention_policies:
  - {name: old-orders, table: orders, age_column: placed_at, older_than: P10Y, action: anonymize}
ignore:
  - {table: users, column: marketing_opt_in, reason: "a preference flag, not an identifier"}
"""


def _error(text: str) -> dict[str, str]:
    with pytest.raises(ManifestInvalid) as caught:
        load_manifest(text)
    errors: list[dict[str, str]] = caught.value.extra["errors"]
    return errors[0]


def test_valid_manifest_decodes_and_normalises() -> None:
    manifest = load_manifest(VALID)
    orders = manifest.tables["orders"]
    assert manifest.subject.key_columns == ("id",)
    assert manifest.subject.identity("email").column == "email"
    assert orders.link is not None
    assert orders.link.path[0].from_columns == ("user_id",)
    assert orders.columns["delivery_note"].surrogate == Surrogate(kind="null")
    assert orders.columns["born"].surrogate_spec == Surrogate(kind="constant", value="1900-01-01")


def test_yaml_and_json_forms_hash_the_same() -> None:
    manifest = load_manifest(VALID)
    again = load_manifest(to_yaml(manifest))
    assert again == manifest
    assert content_hash(again) == content_hash(manifest)
    assert content_hash(load_manifest(VALID.replace("P10Y, action", "P11Y, action"))) != content_hash(
        manifest
    )


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            ("strategy: anonymize,", "strategy: scramble,"),
            "tables.orders.columns.delivery_note.strategy",
            "scramble",
        ),
        (("duration: P10Y", "duration: ten years"), "tables.orders.retention.duration", "ISO 8601"),
        (
            ("delivery_note: {", "delivery_note: {colour: red, "),
            "tables.orders.columns.delivery_note.colour",
            "unknown key",
        ),
        (
            ("{from: user_id, to: users}", "{from: user_id}"),
            "tables.orders.link.path[0].to",
            "missing",
        ),
        (
            ("{env: LETHE_TARGET_SHOP_URL}", "{url: postgresql://u:p@h/db}"),
            "connection.url",
            "unknown key",
        ),
        (
            ("category: user.contact.note", "category: Contact Note"),
            "tables.orders.columns.delivery_note",
            "dotted",
        ),
        (
            ("older_than: P10Y, action: anonymize", "older_than: P10Y, action: shred"),
            "retention_policies[0].action",
            "shred",
        ),
    ],
)
def test_errors_name_the_key_path(change: tuple[str, str], field: str, words: str) -> None:
    error = _error(VALID.replace(*change))
    assert error["field"] == field
    assert words in error["message"]


def test_syntax_error_names_line() -> None:
    assert _error("system: shop\n  bad: [\n")["field"].startswith("line ")


def test_connection_needs_exactly_one_source() -> None:
    error = _error(VALID.replace("{env: LETHE_TARGET_SHOP_URL}", "{env: A, file: /b}"))
    assert error["field"] == "connection"


def test_duration_before_is_calendar_aware() -> None:
    moment = datetime(2026, 3, 31, 12, tzinfo=UTC)
    assert parse_duration("P1M").before(moment) == datetime(2026, 2, 28, 12, tzinfo=UTC)
    assert parse_duration("P10Y").before(moment) == datetime(2016, 3, 31, 12, tzinfo=UTC)
    assert parse_duration("PT12H").before(moment) == datetime(2026, 3, 31, tzinfo=UTC)
    assert parse_duration("P0D").before(moment) == moment


def test_a_duplicate_key_inside_a_list_item_is_named_with_both_lines() -> None:
    item = (
        "  - {name: old-orders, table: orders, age_column: placed_at, older_than: P10Y, action: anonymize}\n"
    )
    block = (
        "  - name: old-orders\n    table: orders\n    age_column: placed_at\n"
        "    older_than: P10Y\n    older_than: P0D\n"
    )
    document = VALID.replace(item, block)
    lines = [i + 1 for i, line in enumerate(document.splitlines()) if "older_than:" in line]
    error = _error(document)
    assert error["field"] == "retention_policies[0].older_than"
    assert f"lines {lines[0]} and {lines[1]}" in error["message"]


def test_a_quoted_null_surrogate_is_the_null_surrogate_and_a_bare_one_is_refused() -> None:
    columns = load_manifest(VALID).tables["orders"].columns
    assert columns["delivery_note"].surrogate_spec == Surrogate(kind="null")
    error = _error(VALID.replace('surrogate: "null"}', "surrogate: null}"))
    assert error["field"] == "tables.orders.columns.delivery_note.surrogate"
    assert 'write `surrogate: "null"`' in error["message"]
