"""Erasure end to end on SQLite, PostgreSQL and MariaDB: what goes, what stays, what blocks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.engine.erasure import ErasureBlocked, ErasureOptions, execute_erasure, plan_erasure
from tests.integration.erasure import schema
from tests.integration.erasure.conftest import seeded_shop

PEOPLE = 6
OPTIONS = ErasureOptions(secret="erasure-test-secret-erasure-test-secret")


@pytest.fixture
async def shop(target_url: str, tmp_path: Any) -> AsyncIterator[AsyncEngine]:
    """The seeded target, through the registry (SQLite gets foreign keys enforced)."""
    async with seeded_shop(target_url, tmp_path, PEOPLE) as engine:
        yield engine


def _subject_rows(before: dict[str, dict[Any, Any]], subject: int) -> dict[str, set[Any]]:
    """Primary keys of the rows erasure of ``subject`` may change or remove, per table."""
    orders = {k for k, r in before["orders"].items() if r[1] == subject}
    return {
        "users": {(subject,)},
        "addresses": {k for k, r in before["addresses"].items() if r[1] == subject},
        "orders": orders,
        "order_items": {k for k, r in before["order_items"].items() if (r[1],) in orders},
        "comments": {k for k, r in before["comments"].items() if r[1] == subject},
        "messages": {k for k, r in before["messages"].items() if subject in (r[1], r[2])},
        "groups": set(),
        "group_members": {k for k in before["group_members"] if k[1] == subject},
        "device_logs": {k for k, r in before["device_logs"].items() if r[1] == subject},
    }


BATCHED = ErasureOptions(secret=OPTIONS.secret, batch_threshold=0, batch_size=1)


@pytest.mark.parametrize("options", [OPTIONS, BATCHED], ids=["one-transaction", "batched"])
async def test_erasure_removes_the_subject_and_nothing_else(
    shop: AsyncEngine, options: ErasureOptions
) -> None:
    before = await schema.snapshot(shop)
    outcome = await execute_erasure(shop, schema.manifest(), {"email": "person1@example.com"}, options)
    after = await schema.snapshot(shop)

    assert outcome.found
    assert outcome.verified
    if options is BATCHED:
        assert outcome.batches > len(schema.TABLES)
    touched = _subject_rows(before, 1)
    for table in ("addresses", "comments", "group_members", "device_logs"):
        assert not touched[table] & set(after[table]), table
        assert outcome.deleted[table] == len(touched[table])
    for table, rows in before.items():  # everyone else byte-identical
        for key, row in rows.items():
            if key not in touched[table]:
                assert after[table][key] == row, (table, key)
    user = after["users"][(1,)]
    original = before["users"][(1,)]
    assert user[1] != original[1]
    assert user[1].endswith(("@invalid.example", "@x.invalid"))
    assert user[2] != original[2]
    assert user[3] is None
    assert user[4] == original[4]  # retained column untouched
    for key in touched["orders"]:
        assert after["orders"][key][:3] == before["orders"][key][:3]  # retained
        assert after["orders"][key][3] is None
    for key in touched["order_items"]:
        assert after["order_items"][key][3] is None
        assert after["order_items"][key][:3] == before["order_items"][key][:3]
    sent = after["messages"][(1,)]
    assert sent[3] != before["messages"][(1,)][3]  # the subject's side
    assert sent[5] != before["messages"][(1,)][5]
    assert sent[4] == before["messages"][(1,)][4]  # the recipient's side untouched
    received = after["messages"][(PEOPLE,)]
    assert received[4] != before["messages"][(PEOPLE,)][4]
    assert received[3] == before["messages"][(PEOPLE,)][3]
    assert received[5] == before["messages"][(PEOPLE,)][5]
    await _assert_foreign_keys_hold(shop)


async def _assert_foreign_keys_hold(engine: AsyncEngine) -> None:
    if engine.dialect.name != "sqlite":
        return  # PostgreSQL and MariaDB enforce them on every statement
    async with engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all() == []


async def test_second_erasure_changes_nothing(shop: AsyncEngine) -> None:
    manifest = schema.manifest()
    await execute_erasure(shop, manifest, {"user_id": "2"}, OPTIONS)
    once = await schema.snapshot(shop)
    outcome = await execute_erasure(shop, manifest, {"user_id": "2"}, OPTIONS)
    assert await schema.snapshot(shop) == once
    assert sum(outcome.deleted.values()) == 0
    missing = await execute_erasure(shop, manifest, {"email": "person2@example.com"}, OPTIONS)
    assert not missing.found


async def test_short_unique_email_survives_many_erasures(shop: AsyncEngine) -> None:
    async with shop.begin() as conn:
        await conn.execute(
            insert(schema.users),
            [
                {
                    "id": 10**8 + i,
                    "email": f"u{i}@ex.io",
                    "full_name": "x",
                    "country": "SE",
                    "created_at": schema.seed_rows(1)["users"][0]["created_at"],
                }
                for i in range(40)
            ],
        )
    manifest = schema.manifest()
    for i in range(40):
        outcome = await execute_erasure(shop, manifest, {"email": f"u{i}@ex.io"}, OPTIONS)
        assert outcome.verified
    for person in range(1, PEOPLE + 1):
        await execute_erasure(shop, manifest, {"user_id": str(person)}, OPTIONS)
    emails = [r[1] for r in (await schema.snapshot(shop))["users"].values()]
    assert len(emails) == len(set(emails)) == PEOPLE + 40
    assert all(len(e) <= 24 for e in emails)


async def test_outside_reference_blocks_and_changes_nothing(shop: AsyncEngine) -> None:
    async with shop.begin() as conn:  # person 2 replies to person 1's comment
        await conn.execute(
            insert(schema.comments), [{"id": 999, "user_id": 2, "parent_id": 10, "body": "reply"}]
        )
    before = await schema.snapshot(shop)
    manifest = schema.manifest()
    async with shop.connect() as conn:
        plan = await plan_erasure(conn, manifest, {"user_id": "1"}, OPTIONS)
    assert plan.blocked is not None
    assert "fk_comments_parent" in plan.blocked
    with pytest.raises(ErasureBlocked) as caught:
        await execute_erasure(shop, manifest, {"user_id": "1"}, OPTIONS)
    assert "fk_comments_parent" in caught.value.detail
    assert "'comments'" in caught.value.detail
    assert await schema.snapshot(shop) == before


async def test_outside_reference_set_null(shop: AsyncEngine) -> None:
    async with shop.begin() as conn:
        await conn.execute(
            insert(schema.comments), [{"id": 999, "user_id": 2, "parent_id": 10, "body": "reply"}]
        )
    manifest = schema.manifest(comments={"on_outside_reference": "set_null"})
    outcome = await execute_erasure(shop, manifest, {"user_id": "1"}, OPTIONS)
    after = await schema.snapshot(shop)
    assert after["comments"][(999,)] == (999, 2, None, "reply")
    assert outcome.outside_references == {"comments.parent_id": 1}
    assert (10,) not in after["comments"]


async def test_plan_shows_strategy_rows_and_sql_without_the_identifier(shop: AsyncEngine) -> None:
    async with shop.connect() as conn:
        plan = await plan_erasure(conn, schema.manifest(), {"email": "person3@example.com"}, OPTIONS)
    tables = {t.table: t for t in plan.tables}
    assert plan.found
    assert plan.blocked is None
    assert tables["addresses"].strategy == "delete"
    assert tables["addresses"].rows == 1
    assert tables["order_items"].rows == 2
    assert tables["orders"].strategy == "retain"
    assert tables["orders"].legal_basis == "tax law: invoices kept 10 years"
    assert tables["users"].changed_columns["phone"] == "null"
    assert "country" in tables["users"].retained_columns
    order = [t.table for t in plan.tables]
    assert order.index("order_items") < order.index("orders") < order.index("users")
    for table in plan.tables:
        for sql in table.sql:
            assert "person3" not in sql
            assert ":subject_key_0" in sql
    assert any(s.startswith("DELETE FROM addresses") for s in tables["addresses"].sql)
    async with shop.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM addresses"))).scalar_one()
    assert count == PEOPLE  # planning changed nothing


class _Crash(Exception):
    pass


async def test_batched_erasure_resumes_from_its_cursor(shop: AsyncEngine) -> None:
    manifest = schema.manifest()
    saved: list[dict[str, Any]] = []

    async def crash_after_three(cursor: dict[str, Any]) -> None:
        saved.append(cursor)
        if len(saved) == 3:
            raise _Crash

    with pytest.raises(_Crash):
        await execute_erasure(shop, manifest, {"user_id": "1"}, BATCHED, save_cursor=crash_after_three)
    resumed: list[dict[str, Any]] = []

    async def keep(cursor: dict[str, Any]) -> None:
        resumed.append(cursor)

    outcome = await execute_erasure(
        shop, manifest, {"user_id": "1"}, BATCHED, cursor=saved[-1], save_cursor=keep
    )
    assert outcome.verified
    assert resumed[0]["batches"] == saved[-1]["batches"] + 1
    await _assert_same_as_uninterrupted(shop, await schema.snapshot(shop))


async def _assert_same_as_uninterrupted(shop: AsyncEngine, interrupted: dict[str, Any]) -> None:
    """Reseed, erase person 1 in one go: the target ends as the interrupted run left it."""
    async with shop.begin() as conn:
        await conn.execute(schema.comments.update().values(parent_id=None))  # InnoDB checks per row
        for table in reversed(schema.TABLES):
            await conn.execute(table.delete())
        for table in schema.TABLES:
            rows = schema.seed_rows(PEOPLE)[table.name]
            if rows:
                await conn.execute(insert(table), rows)
    await execute_erasure(shop, schema.manifest(), {"user_id": "1"}, OPTIONS)
    assert await schema.snapshot(shop) == interrupted


async def test_composite_key_table_is_erased_in_several_batches(shop: AsyncEngine) -> None:
    async with shop.begin() as conn:
        await conn.execute(insert(schema.groups), [{"id": 3, "title": "walkers"}])
        await conn.execute(
            insert(schema.group_members),
            [  # person 1 is already in group 2; others' keys sit between theirs
                {"group_id": 1, "member_id": 1, "nickname": "one"},
                {"group_id": 3, "member_id": 1, "nickname": "three"},
                {"group_id": 3, "member_id": 2, "nickname": "other"},
            ],
        )
    before = await schema.snapshot(shop)
    saved: list[dict[str, Any]] = []

    async def keep(cursor: dict[str, Any]) -> None:
        saved.append(cursor)

    options = ErasureOptions(secret=OPTIONS.secret, batch_threshold=0, batch_size=2)
    async with shop.connect() as conn:
        plan = await plan_erasure(conn, schema.manifest(), {"user_id": "1"}, options)
    assert {t.table: t.batched for t in plan.tables}["group_members"]
    outcome = await execute_erasure(shop, schema.manifest(), {"user_id": "1"}, options, save_cursor=keep)
    after = await schema.snapshot(shop)

    assert outcome.verified
    composite = [c["after"] for c in saved if c["after"] is not None and len(c["after"]) == 2]
    assert composite == [[2, 1], [3, 1]]  # three rows of the subject, two rows per batch
    assert outcome.deleted["group_members"] == 3
    gone = {(1, 1), (2, 1), (3, 1)}
    assert not gone & set(after["group_members"])
    assert {k: v for k, v in before["group_members"].items() if k not in gone} == after["group_members"]
    await _assert_foreign_keys_hold(shop)


async def test_a_cursor_saved_with_a_single_key_value_resumes(shop: AsyncEngine) -> None:
    """Cursors saved before keys became lists hold the bare key value as ``after``."""
    manifest = schema.manifest()
    saved: list[dict[str, Any]] = []

    async def crash_inside_a_table(cursor: dict[str, Any]) -> None:
        saved.append(cursor)
        if cursor["after"] is not None and len(saved) >= 3:
            raise _Crash

    with pytest.raises(_Crash):
        await execute_erasure(shop, manifest, {"user_id": "1"}, BATCHED, save_cursor=crash_inside_a_table)
    old = dict(saved[-1])
    [old["after"]] = old["after"]
    assert not isinstance(old["after"], list)
    resumed: list[dict[str, Any]] = []

    async def keep(cursor: dict[str, Any]) -> None:
        resumed.append(cursor)

    outcome = await execute_erasure(shop, manifest, {"user_id": "1"}, BATCHED, cursor=old, save_cursor=keep)
    assert outcome.verified
    assert resumed[0]["step"] == old["step"]
    assert resumed[0]["batches"] == old["batches"] + 1
    await _assert_same_as_uninterrupted(shop, await schema.snapshot(shop))


async def test_outside_reference_anonymize_keeps_the_referenced_row(shop: AsyncEngine) -> None:
    async with shop.begin() as conn:
        await conn.execute(
            insert(schema.comments), [{"id": 999, "user_id": 2, "parent_id": 10, "body": "reply"}]
        )
    manifest = schema.manifest(comments={"on_outside_reference": "anonymize"})
    outcome = await execute_erasure(shop, manifest, {"user_id": "1"}, OPTIONS)
    after = await schema.snapshot(shop)
    assert outcome.verified
    assert after["comments"][(999,)] == (999, 2, 10, "reply")
    assert after["comments"][(10,)][3] == "redacted"  # kept for the reply, anonymized
    assert (11,) not in after["comments"]  # the subject's other comment is gone


async def test_sqlite_erasure_leaves_no_bytes_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "secure.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await schema.create_target(engine, PEOPLE)
        await execute_erasure(engine, schema.manifest(), {"user_id": "3"}, OPTIONS)
    finally:
        await engine.dispose()
    content = path.read_bytes()
    for value in (b"person3@example.com", b"3 Main Street", b"+46700000003", b"comment by 3"):
        assert value not in content, value
    assert b"person4@example.com" in content  # others untouched
