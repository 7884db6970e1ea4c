"""A chat application without foreign keys: scaffold proposes logical links, exports withhold
credentials (Art. 15(4)), erasure scrubs mentions of the subject from others' text."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings
from app.engine.erasure import ErasureOptions, execute_erasure, plan_erasure
from app.engine.export import WITHHELD_BASIS
from app.engine.schema_info import reflect_schema
from app.engine.scrub import SCRUB_SURROGATE
from app.manifest.inference import INFERRED_REASON
from app.manifest.lint import lint
from app.manifest.loading import load_manifest
from app.manifest.model import Manifest
from app.manifest.scaffold import scaffold
from app.manifest.validation import validate
from tests.integration.chat import schema
from tests.integration.requests_support import drain

Headers = Callable[..., dict[str, str]]
OPTIONS = ErasureOptions(secret="chat-test-secret-chat-test-secret-chat", batch_size=2)
STEPWISE = ErasureOptions(secret=OPTIONS.secret, batch_threshold=0, batch_size=2)
"""Every table a step of its own, every step its own transactions (large footprints)."""
WITHHELD = {"users": {"password_hash", "totp_secret"}, "access_tokens": {"token"}}


def _manifest(**changes: Any) -> Manifest:
    document = msgspec.json.decode(msgspec.json.encode(schema.MANIFEST))
    document.update(changes)
    return msgspec.convert(document, Manifest)


async def test_scaffold_proposes_logical_links_and_flags_personal_columns(chat: str) -> None:
    engine = create_async_engine(chat)
    async with engine.connect() as conn:
        reflected = await reflect_schema(conn)
    await engine.dispose()
    assert not reflected.foreign_keys()  # the application declares none
    draft = load_manifest(scaffold(reflected, system="chat", env_var=schema.TARGET_ENV))

    assert set(draft.tables) == {"users", "posts", "reactions", "direct_channels", "access_tokens", "audits"}
    assert draft.subject.identities == {"user_id": "id", "email": "email", "username": "username"}
    single = {"posts": "CreatorId", "reactions": "UserId", "access_tokens": "user_id", "audits": "actor_id"}
    for table, column in single.items():
        link = draft.tables[table].link
        assert link is not None, table
        (hop,) = link.path
        assert (hop.from_columns, hop.to, hop.logical, hop.reason) == (
            (column,),
            "users",
            True,
            INFERRED_REASON,
        )
    shared = draft.tables["direct_channels"].links  # referencing the subject twice: both directions
    assert shared is not None
    assert {name: link.path[0].from_columns for name, link in shared.items()} == {
        "owner": ("owner_id",),
        "member": ("member_id",),
    }
    assert all(link.path[0].logical for link in shared.values())
    # the subject table is referenced by the others: kept (anonymized), never deleted
    assert draft.tables["users"].strategy == "anonymize"
    columns = draft.tables["users"].columns
    assert {name: spec.category for name, spec in columns.items()} == {
        "username": "user.account.username",
        "email": "user.contact.email",
        "first_name": "user.name",
        "last_name": "user.name",
        "password_hash": "user.authorization.credentials",
        "totp_secret": "user.authorization.credentials",
        "external_id": "user.unique_id",
        "settings": "user.account.settings",
        "last_login_ip": "user.device.ip_address",
        "position": "user.job_title",
    }
    assert not columns["password_hash"].export
    assert columns["password_hash"].export_reason
    assert not draft.tables["access_tokens"].columns["token"].export

    graph, issues = validate(draft, reflected)
    assert graph is not None
    assert [i for i in issues if i.severity == "error"] == []
    assert [f for f in lint(draft, reflected) if not f.acknowledged] == []


async def test_lint_reports_unmanaged_referencing_tables_and_exported_credentials(chat: str) -> None:
    engine = create_async_engine(chat)
    async with engine.connect() as conn:
        reflected = await reflect_schema(conn)
    await engine.dispose()
    document = msgspec.json.decode(msgspec.json.encode(schema.MANIFEST))
    del document["tables"]["audits"]
    document["tables"]["users"]["columns"]["password_hash"].pop("export")
    document["tables"]["users"]["columns"]["password_hash"].pop("export_reason")
    findings = {(f.kind, f.table, f.column) for f in lint(msgspec.convert(document, Manifest), reflected)}
    assert ("personal_table", "audits", None) in findings
    assert ("exported_credential", "users", "password_hash") in findings
    assert not any(k == "exported_credential" and c == "totp_secret" for k, _, c in findings)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the store is not under test
async def test_export_withholds_credentials_and_says_so(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    chat: str,
) -> None:
    registered = await client.post(
        "/v1/manifests",
        content=msgspec.json.encode(schema.MANIFEST),
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert registered.status_code in (200, 201), registered.text
    body = {"kind": "access", "identities": {"email": schema.SUBJECT["email"]}}
    created = await client.post("/v1/requests", json=body, headers=auth())
    assert created.status_code == 202, created.text
    await drain(settings, store_engine)
    location = created.headers["location"]
    assert (await client.get(location, headers=auth())).json()["status"] == "completed"
    secrets = next(r for r in schema.seed_rows()["users"] if r["id"] == 1)
    token = next(r for r in schema.seed_rows()["access_tokens"] if r["user_id"] == 1)["token"]
    hidden = [secrets["password_hash"], secrets["totp_secret"], token]

    exported = await client.get(f"{location}/export?format=json", headers=auth("requests:read"))
    assert exported.status_code == 200
    for value in hidden:
        assert value not in exported.text
    tables = exported.json()["systems"]["chat"]["tables"]
    assert tables["users"]["rows"][0]["email"] == schema.SUBJECT["email"]
    for table, columns in WITHHELD.items():
        assert not columns & set(tables[table]["rows"][0]), table
        withheld = tables[table]["metadata"]["withheld"]
        assert {w["column"] for w in withheld} == columns
        assert all(w["basis"] == WITHHELD_BASIS and w["reason"] for w in withheld)
    assert tables["posts"]["metadata"]["withheld"] == []

    archive_response = await client.get(f"{location}/export?format=zip", headers=auth("requests:read"))
    archive = zipfile.ZipFile(io.BytesIO(archive_response.content))
    for name in archive.namelist():
        content = archive.read(name).decode()
        assert not any(value in content for value in hidden), name
    for table, columns in WITHHELD.items():
        header = next(csv.reader(io.StringIO(archive.read(f"chat/{table}.csv").decode())))
        assert "id" in header
        assert not columns & set(header)
    metadata = json.loads(archive.read("chat/metadata.json"))
    assert {w["column"] for w in metadata["tables"]["users"]["withheld"]} == WITHHELD["users"]

    # the erasure plan (dry run) shows the scrubbing, patterns as placeholders
    preview = {"kind": "erasure", "identities": {"email": schema.SUBJECT["email"]}, "dry_run": True}
    planned = await client.post("/v1/requests", json=preview, headers=auth())
    await drain(settings, store_engine)
    plan = (await client.get(f"{planned.headers['location']}/plan", headers=auth("requests:read"))).json()
    scrubs = {(s["table"], s["column"]): s for s in plan["systems"][0]["scrubs"]}
    assert scrubs[("posts", "body")]["rows"] == 9
    assert scrubs[("posts", "body")]["identities"] == ["email", "username"]
    assert "example.com" not in json.dumps(plan)


def _texts(snapshot: dict[str, dict[Any, dict[str, Any]]]) -> dict[tuple[str, Any], str]:
    """Every scrubbed value of others' rows, as text (JSON documents canonicalised)."""
    out: dict[tuple[str, Any], str] = {}
    for key, row in snapshot["posts"].items():
        out[("posts", key)] = row["body"]
    for key, row in snapshot["audits"].items():
        details = row["details"]
        loaded = json.loads(details) if isinstance(details, str) else details
        out[("audits.note", key)] = row["note"]
        out[("audits.details", key)] = json.dumps(loaded, sort_keys=True)
    return out


def _expected(text: str) -> str:
    """What scrubbing must make of a text, written out by hand for the seed's sentences."""
    replacements = {
        "thanks @ada, see you": "thanks @[erased], see you",
        "mail Ada@Example.COM or ada@example.com.": "mail [erased] or [erased].",
        "@ada: ping ada@example.com, ada!": "@[erased]: ping [erased], [erased]!",
        "reset for ada@example.com": "reset for [erased]",
        "login by @ada": "login by @[erased]",
        '{"by": "bob", "target": "ADA@example.com"}': '{"by": "bob", "target": "[erased]"}',
    }
    return replacements.get(text, text)


@pytest.mark.parametrize("options", [OPTIONS, STEPWISE], ids=["one-transaction", "stepwise"])
async def test_scrubbing_leaves_no_mention_and_others_text_byte_identical(
    chat_engine: AsyncEngine, options: ErasureOptions
) -> None:
    manifest = _manifest()
    before = await schema.snapshot(chat_engine)
    async with chat_engine.connect() as conn:
        plan = await plan_erasure(conn, manifest, {"email": schema.SUBJECT["email"]}, OPTIONS)
    scrubs = {(s.table, s.column): s for s in plan.scrubs}
    assert set(scrubs) == {("posts", "body"), ("audits", "note"), ("audits", "details")}
    assert scrubs[("posts", "body")].rows == 3 * 3  # three mentioning posts by each of three others
    assert scrubs[("audits", "note")].rows == 2
    assert all(":scrub_pattern_0" in s.sql[0] and "ada" not in s.sql[0] for s in plan.scrubs)

    saved: list[dict[str, Any]] = []

    async def save(cursor: dict[str, Any]) -> None:
        saved.append(cursor)

    outcome = await execute_erasure(
        chat_engine, manifest, {"email": "ADA@Example.com"}, options, save_cursor=save
    )
    after = await schema.snapshot(chat_engine)

    assert outcome.found
    assert outcome.verified
    assert outcome.scrubbed["posts.body"] == 9
    if options is STEPWISE:  # scrubbed first, in batches, and the cursor says so before any step
        assert saved[0]["scrub_done"]
        assert saved[0]["step"] == 0
    assert outcome.mentions_left == {"posts.body": 0, "audits.note": 0, "audits.details": 0}
    old, new = _texts(before), _texts(after)
    own_posts = {k for k, r in before["posts"].items() if r["CreatorId"] == 1}
    for key, text in old.items():
        if key[0] == "posts" and key[1] in own_posts:
            continue  # the subject's own posts are anonymized as a whole
        assert new[key] == _expected(text), key
    for key, text in new.items():
        if key[0] == "posts" and key[1] in own_posts:
            continue
        if text == old[key]:
            continue
        assert "ada@example.com" not in text.lower()
        assert "@ada" not in text
    assert {k for k, r in after["reactions"].items() if r["UserId"] == 1} == set()
    assert after["direct_channels"][1]["owner_alias"] is None
    assert after["direct_channels"][1]["member_alias"] == "B"  # the other side untouched
    assert after["direct_channels"][2]["member_alias"] is None
    assert after["direct_channels"][2]["owner_alias"] == "C"
    assert after["users"][1]["email"] != schema.SUBJECT["email"]
    assert after["users"][1]["password_hash"] != before["users"][1]["password_hash"]
    for table in ("users", "access_tokens", "reactions"):
        for key, row in before[table].items():
            if key != 1 and (table != "reactions" or row["UserId"] != 1):
                assert after[table][key] == row, (table, key)
    assert SCRUB_SURROGATE in after["posts"][2]["body"]

    again = await execute_erasure(chat_engine, manifest, {"user_id": "1"}, options)
    assert again.verified
    assert await schema.snapshot(chat_engine) == after  # nothing left to scrub
