"""Validation of what would erase the wrong rows: keys, identities, unbacked hops, hop types,
rectifiable keys, overlapping links, retention policies against declared retention."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from app.manifest.issues import Issue
from app.manifest.loading import load_manifest
from app.manifest.validation import validate
from tests.unit.manifest.factories import fk, manifest, schema, table

SHOP = schema(
    table("users", "email", "full_name", "uuid:uuid", unique=(("email",), ("uuid",)), not_null=("email",)),
    table("comments", "user_id", "user_ref", "body", fks=(fk("comments", "user_id", "users"),)),
    table("notes", "owner_ref", "body"),  # no foreign key at all
    table(
        "messages",
        "sender_id",
        "recipient_id",
        "sender_name",
        "recipient_name",
        fks=(fk("messages", "sender_id", "users"), fk("messages", "recipient_id", "users")),
    ),
)


def _errors(document_tables: dict[str, Any], **extra: Any) -> list[Issue]:
    _, issues = validate(manifest(document_tables, **extra), SHOP)
    return [i for i in issues if i.severity == "error"]


def _subject_errors(key: str, **identities: Any) -> list[Issue]:
    document = msgspec.to_builtins(manifest({}))
    document["subject"] = {"table": "users", "key": key, "identities": identities or {"user_id": "id"}}
    _, issues = validate(load_manifest(json.dumps(document), "json"), SHOP)
    return [i for i in issues if i.severity == "error"]


def _link(*hops: dict[str, Any]) -> dict[str, Any]:
    return {"link": {"path": list(hops)}}


def test_the_subject_key_must_be_unique_and_not_null() -> None:
    assert _subject_errors("id") == []
    assert _subject_errors("email", email="email") == []
    (not_unique,) = _subject_errors("full_name", name={"column": "full_name", "ambiguous": "refuse"})
    assert (not_unique.kind, not_unique.table, not_unique.column) == ("subject_key", "users", "full_name")
    (nullable,) = _subject_errors("uuid", user_id="id")
    assert nullable.kind == "subject_key"
    assert "allows NULL" in nullable.message


def test_an_identity_on_a_non_unique_column_needs_ambiguous_refuse() -> None:
    (issue,) = _subject_errors("id", user_id="id", name="full_name")
    assert (issue.kind, issue.path, issue.column) == (
        "ambiguous_identity",
        "subject.identities.name",
        "full_name",
    )
    assert "ambiguous: refuse" in issue.message
    assert _subject_errors("id", name={"column": "full_name", "ambiguous": "refuse"}) == []


def test_a_hop_ignoring_an_existing_foreign_key_is_refused_unless_logical() -> None:
    (issue,) = _errors({"comments": _link({"from": "id", "to": "users"})})
    assert (issue.kind, issue.table, issue.column) == ("link_ignores_foreign_key", "comments", "id")
    assert "comments(user_id) -> users(id)" in issue.message
    declared = {"from": "id", "to": "users", "logical": True, "reason": "comment ids equal user ids here"}
    assert _errors({"comments": _link(declared)}) == []
    assert _errors({"comments": _link({"from": "user_id", "to": "users"})}) == []


def test_a_primary_key_joined_to_a_key_without_foreign_key_is_refused_unless_logical() -> None:
    (issue,) = _errors({"notes": _link({"from": "id", "to": "users"})})
    assert (issue.kind, issue.table, issue.column) == ("unbacked_link", "notes", "id")
    logical = {"from": "id", "to": "users", "logical": True, "reason": "one note per user, same id"}
    assert _errors({"notes": _link(logical)}) == []
    assert _errors({"notes": _link({"from": "owner_ref", "to": "users", "to_columns": "email"})}) == []


@pytest.mark.parametrize(
    ("hop", "left", "right"),
    [
        ({"from": "owner_ref", "to": "users"}, "'notes.owner_ref' (varchar)", "'users.id' (integer)"),
        (
            {"from": "owner_ref", "to": "users", "to_columns": "uuid"},
            "'notes.owner_ref' (varchar)",
            "'users.uuid' (uuid)",
        ),
    ],
)
def test_a_hop_between_different_types_names_both_and_a_cast_fixes_it(
    hop: dict[str, Any], left: str, right: str
) -> None:
    (issue,) = _errors({"notes": _link(hop)})
    assert issue.kind == "type_mismatch"
    assert issue.path == "tables.notes.link.path[0]"
    assert left in issue.message
    assert right in issue.message
    cast = "integer" if "to_columns" not in hop else "uuid"
    assert _errors({"notes": _link({**hop, "cast": cast})}) == []
    (still,) = _errors({"notes": _link({**hop, "cast": "date"})})
    assert "casts" in still.message


def test_a_derived_foreign_key_between_different_types_is_refused() -> None:
    loose = schema(  # SQLite accepts a foreign key between columns of different types
        table("users", "email"),
        table("devices", "user_id:varchar", fks=(fk("devices", "user_id", "users"),)),
    )
    _, issues = validate(manifest({"devices": {}}), loose)
    (issue,) = [i for i in issues if i.severity == "error"]
    assert (issue.kind, issue.path) == ("type_mismatch", "tables.devices.link")


def test_key_and_foreign_key_columns_cannot_be_rectifiable() -> None:
    retained = {
        "category": "user.id",
        "strategy": "retain",
        "rectifiable": True,
        "retention": {"legal_basis": "x", "duration": "P1Y"},
    }
    issues = _errors({"users": {"columns": {"id": retained}}, "comments": {"columns": {"user_id": retained}}})
    assert {(i.kind, i.table, i.column) for i in issues} == {
        ("rectifiable_key", "users", "id"),
        ("rectifiable_key", "comments", "user_id"),
    }


def test_overlapping_link_columns_are_refused_naming_both_links() -> None:
    links = {
        "sender": {
            "path": [{"from": "sender_id", "to": "users"}],
            "columns": ["sender_name", "recipient_name"],
        },
        "recipient": {"path": [{"from": "recipient_id", "to": "users"}], "columns": ["recipient_name"]},
    }
    (issue,) = _errors({"messages": {"links": links}})
    assert (issue.kind, issue.column) == ("overlapping_links", "recipient_name")
    assert "'sender' and 'recipient'" in issue.message


@pytest.mark.parametrize(
    ("older_than", "override", "severity"),
    [
        ("P1Y", None, "error"),
        ("P1Y", "agreed with the DPO", "risk"),
        ("P10Y", None, None),
        ("P11Y", None, None),
    ],
)
def test_a_policy_shorter_than_the_declared_retention(
    older_than: str, override: str | None, severity: str | None
) -> None:
    policy: dict[str, Any] = {
        "name": "purge",
        "table": "comments",
        "age_column": "body",
        "older_than": older_than,
    }
    if override:
        policy["retention_override"] = override
    tables = {"comments": {"strategy": "retain", "retention": {"legal_basis": "law", "duration": "P10Y"}}}
    _, issues = validate(manifest(tables, retention_policies=[policy]), SHOP)
    found = [i for i in issues if i.kind == "retention_conflict"]
    assert [i.severity for i in found] == ([severity] if severity else [])
