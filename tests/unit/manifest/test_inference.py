"""Schemas without foreign keys: references inferred from names and types; scaffold and lint."""

from __future__ import annotations

import pytest

from app.lib.errors import ManifestInvalid
from app.manifest.inference import INFERRED_REASON, inferred_references
from app.manifest.lint import guess_personal, lint
from app.manifest.loading import load_manifest
from app.manifest.scaffold import scaffold
from app.manifest.schema import ColumnInfo
from app.manifest.validation import validate
from tests.unit.manifest.factories import fk, manifest, schema, table

USERS = table("users", "email", "handle")


@pytest.mark.parametrize(
    "column", ["user_id", "UserId", "CreatorId", "owner_id", "author_id", "target_user_id", "created_by"]
)
def test_person_references_point_at_the_subject(column: str) -> None:
    found = inferred_references(schema(USERS, table("things", f"{column}:integer")), "users")
    assert [(f.table, f.columns, f.referred_table, f.referred_columns) for f in found] == [
        ("things", (column,), "users", ("id",))
    ]


def test_inference_needs_the_same_type_and_skips_declared_keys() -> None:
    tables = schema(
        USERS,
        table("a", "user_id:varchar"),  # text against an integer key
        table("b", "user_id", fks=(fk("b", "user_id", "users"),)),  # declared
        table("c", "post_id:integer"),
        table("posts", "author_id:integer"),
    )
    found = {(f.table, f.columns[0], f.referred_table) for f in inferred_references(tables, "users")}
    assert found == {("c", "post_id", "posts"), ("posts", "author_id", "users")}


def test_scaffold_writes_logical_links_and_both_directions_of_shared_rows() -> None:
    tables = schema(
        USERS,
        table("posts", "author_id:integer", "body:text"),
        table("reactions", "post_id:integer", "UserId:integer"),
        table(  # declared keys referencing the subject twice: a follow table
            "follows",
            "follower_id",
            "followee_id",
            fks=(fk("follows", "follower_id", "users"), fk("follows", "followee_id", "users")),
        ),
        table("messages", "sender_id:integer", "recipient_id:integer"),
    )
    draft = load_manifest(scaffold(tables, system="app", env_var="APP_URL"))
    posts = draft.tables["posts"].link
    assert posts is not None
    assert [(h.from_columns, h.to, h.logical, h.reason) for h in posts.path] == [
        (("author_id",), "users", True, INFERRED_REASON)
    ]
    for name, expected in (("follows", ("follower", "followee")), ("messages", ("sender", "recipient"))):
        links = draft.tables[name].links
        assert links is not None
        assert set(links) == set(expected)
        assert {link.path[0].from_columns[0] for link in links.values()} == {f"{e}_id" for e in expected}
    assert draft.tables["users"].strategy == "anonymize"  # referenced: rows kept elsewhere need it
    assert draft.tables["posts"].strategy == "anonymize"  # reactions reference posts
    assert draft.tables["reactions"].strategy == "delete"
    assert draft.subject.identity("email").ambiguous == "refuse"  # not unique in this schema
    _, issues = validate(draft, tables)
    assert [i.message for i in issues if i.severity == "error"] == []


@pytest.mark.parametrize(
    ("name", "type_name", "category"),
    [
        ("external_id", "varchar", "user.unique_id"),
        ("public_ref", "uuid", "user.unique_id"),
        ("handle", "varchar", "user.account.username"),
        ("screen_name", "varchar", "user.account.username"),
        ("settings", "jsonb", "user.account.settings"),
        ("totp_secret", "varchar", "user.authorization.credentials"),
        ("mfa_seed", "varchar", "user.authorization.credentials"),
        ("api_key", "varchar", "user.authorization.credentials"),
        ("password_hash", "varchar", "user.authorization.credentials"),
        ("lastName", "varchar", "user.name"),
        ("job_title", "varchar", "user.job_title"),
        ("last_login_ip", "varchar", "user.device.ip_address"),
        ("payload", "json", "user.content"),
    ],
)
def test_personal_names_and_content_types(name: str, type_name: str, category: str) -> None:
    guess = guess_personal(ColumnInfo(name, type_name))
    assert guess is not None
    assert guess.category == category


def test_lint_reports_tables_naming_the_subject_and_exported_credentials() -> None:
    tables = schema(table("users", "password_hash"), table("audits", "actor_id:integer", "details:text"))
    findings = lint(
        manifest({"users": {"columns": {"password_hash": {"category": "user.authorization"}}}}), tables
    )
    kinds = {(f.kind, f.table, f.column) for f in findings}
    assert ("personal_table", "audits", None) in kinds
    assert ("exported_credential", "users", "password_hash") in kinds
    withheld = {"category": "user.authorization", "export": False, "export_reason": "secret"}
    quiet = lint(manifest({"users": {"columns": {"password_hash": withheld}}}), tables)
    assert not any(f.kind == "exported_credential" for f in quiet)


@pytest.mark.parametrize(
    ("column", "words"),
    [
        ({"category": "user.x", "export": False}, "export_reason"),
        ({"category": "user.x", "export_reason": "why"}, "only for columns with `export: false`"),
        ({"category": "user.x", "scrub": ["phone"]}, "'phone' is not an identity"),
    ],
)
def test_column_fields_are_checked(column: dict[str, object], words: str) -> None:
    with pytest.raises(ManifestInvalid, match=words):
        manifest({"posts": {"link": {"path": [{"from": "id", "to": "users"}]}, "columns": {"body": column}}})


def test_scrub_needs_text_columns_and_text_identities() -> None:
    tables = schema(USERS, table("posts", "author_id:integer", "body:text", "views:integer"))
    spec = manifest(
        {
            "posts": {
                "link": {"path": [{"from": "author_id", "to": "users", "logical": True, "reason": "no FK"}]},
                "columns": {
                    "body": {"category": "user.content", "scrub": ["user_id"]},
                    "views": {"category": "user.content", "scrub": []},
                },
            }
        }
    )
    _, issues = validate(spec, tables)
    assert [(i.kind, i.path) for i in issues if i.kind == "scrub"] == [
        ("scrub", "tables.posts.columns.body.scrub")
    ]
    assert "only text identities" in next(i.message for i in issues if i.kind == "scrub")
