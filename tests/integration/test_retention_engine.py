"""The retention engine on SQLite, PostgreSQL and MariaDB targets: what is touched, and what is not."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from app.engine.retention import (
    BatchLimits,
    BatchReport,
    PolicyFilter,
    PurgePolicy,
    SurrogateRule,
    compute_cutoff,
    dry_run,
    prepare_purge,
    purge_in_batches,
)
from app.lib.errors import ValidationFailed
from tests.integration.retention_support import (
    NOW,
    engine_for,
    make_target,
    snapshot,
    target_rows,
)

DIALECTS = ["sqlite", "postgresql", "mysql"]
LIMITS = BatchLimits(lock_timeout_ms=2000, statement_timeout_ms=10_000, max_runtime_seconds=60)
CUTOFF = compute_cutoff("P30D", NOW)


@pytest.fixture(params=DIALECTS)
async def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A filled target of each dialect."""
    return await make_target(request, tmp_path, request.param)


def _sessions_policy(**overrides: Any) -> PurgePolicy:
    fields: dict[str, Any] = {
        "system": "shop",
        "table": "sessions",
        "age_column": "expires_at",
        "older_than": "P30D",
        "batch_size": 7,
    }
    fields.update(overrides)
    return PurgePolicy(**fields)


async def _run(url: str, policy: PurgePolicy, cursor: list[Any] | None = None, **kwargs: Any) -> Any:
    reports: list[BatchReport] = []

    async def record(report: BatchReport) -> None:
        reports.append(report)

    async with engine_for(url) as engine:
        async with engine.connect() as connection:
            prepared = await prepare_purge(connection, policy)
        outcome = await purge_in_batches(
            engine,
            prepared,
            cutoff=kwargs.get("cutoff", CUTOFF),
            purge_at=kwargs.get("purge_at", NOW),
            cursor=cursor,
            limits=LIMITS,
            on_batch=kwargs.get("on_batch", record),
        )
    return outcome, reports


async def _count(url: str, policy: PurgePolicy) -> tuple[int, str]:
    async with engine_for(url) as engine, engine.connect() as connection:
        prepared = await prepare_purge(connection, policy)
        result = await dry_run(connection, prepared, CUTOFF)
    return result.count, result.sql


async def test_delete_touches_only_due_rows_that_match_the_filter(target_url: str) -> None:
    filters = (
        PolicyFilter("kind", "in", ("web", "mobile")),
        PolicyFilter("ip_address", "not_null"),
        PolicyFilter("user_id", "ne", 3),
    )
    policy = _sessions_policy(filters=filters)
    naive_cutoff = CUTOFF.replace(tzinfo=None)
    due = {
        row["id"]
        for row in target_rows()["sessions"]
        if row["expires_at"] < naive_cutoff and row["kind"] in ("web", "mobile") and row["user_id"] != 3
    }
    assert 20 < len(due) < 200, "the fixture must mix due and kept rows"
    count, sql = await _count(target_url, policy)
    assert count == len(due)
    assert "DELETE FROM" in sql.upper()
    assert "sessions" in sql

    outcome, reports = await _run(target_url, policy)

    assert outcome.finished
    assert outcome.rows == len(due)
    assert len(reports) >= len(due) // 7
    async with engine_for(target_url) as engine:
        left = {row[0] for row in await snapshot(engine, "sessions")}
    expected = {row["id"] for row in target_rows()["sessions"]} - due
    assert left == expected


async def test_soft_delete_is_idempotent(target_url: str) -> None:
    policy = _sessions_policy(action="soft_delete", soft_delete_column="deleted_at")
    due = [r["id"] for r in target_rows()["sessions"] if r["expires_at"] < CUTOFF.replace(tzinfo=None)]

    first, _ = await _run(target_url, policy)
    async with engine_for(target_url) as engine:
        after_first = await snapshot(engine, "sessions")
    second, _ = await _run(target_url, policy, purge_at=NOW + timedelta(days=1))
    count, _ = await _count(target_url, policy)
    async with engine_for(target_url) as engine:
        after_second = await snapshot(engine, "sessions")

    assert first.rows == len(due)
    assert second.rows == 0
    assert count == 0
    assert after_second == after_first
    marked = [row[0] for row in after_first if row[5] is not None]
    assert marked == sorted(due)


async def test_anonymize_rewrites_personal_columns_once(target_url: str) -> None:
    policy = PurgePolicy(
        system="shop",
        table="orders",
        age_column="placed_at",
        older_than="P2Y",
        action="anonymize",
        batch_size=25,
        surrogates={"contact_email": SurrogateRule("email"), "delivery_note": SurrogateRule("null")},
    )
    cutoff = compute_cutoff("P2Y", NOW).replace(tzinfo=None)
    rows = {r["id"]: r for r in target_rows()["orders"]}
    due = {i for i, r in rows.items() if r["placed_at"] < cutoff}

    first, _ = await _run(target_url, policy, cutoff=compute_cutoff("P2Y", NOW))
    second, _ = await _run(target_url, policy, cutoff=compute_cutoff("P2Y", NOW))

    assert first.rows == len(due)
    assert second.rows == 0
    async with engine_for(target_url) as engine:
        for row in await snapshot(engine, "orders"):
            original = rows[row[0]]
            if row[0] in due:
                assert row[3] == f"erased-{row[0]}@invalid.example"
                assert row[4] is None
            else:
                assert row[3] == original["contact_email"]
                assert row[4] == original["delivery_note"]
            assert row[5] == original["total_cents"]


async def test_composite_keys_are_batched(target_url: str) -> None:
    policy = PurgePolicy(
        system="shop",
        table="events",
        age_column="created_at",
        older_than="P60D",
        filters=(PolicyFilter("tenant", "eq", "a"),),
        batch_size=4,
    )
    cutoff = compute_cutoff("P60D", NOW)
    due = {
        (r["tenant"], r["seq"])
        for r in target_rows()["events"]
        if r["created_at"] < cutoff.replace(tzinfo=None) and r["tenant"] == "a"
    }
    outcome, _ = await _run(target_url, policy, cutoff=cutoff)
    assert outcome.rows == len(due) > 0
    async with engine_for(target_url) as engine:
        left = {(row[0], row[1]) for row in await snapshot(engine, "events")}
    assert left == {(r["tenant"], r["seq"]) for r in target_rows()["events"]} - due


class _Crash(Exception):
    pass


async def test_interrupted_run_resumes_to_the_uninterrupted_end_state(
    request: pytest.FixtureRequest, tmp_path: Path, target_url: str
) -> None:
    kind = target_url.split("+", 1)[0].split(":", 1)[0]
    twin_url = await make_target(request, tmp_path, "mysql" if kind == "mysql" else kind, name="twin")
    policy = _sessions_policy(action="soft_delete", soft_delete_column="deleted_at")
    await _run(twin_url, policy)

    persisted: list[Any] = []

    async def crash_after_three(report: BatchReport) -> None:
        persisted.append(report.cursor)
        if len(persisted) == 3:
            raise _Crash

    with pytest.raises(_Crash):
        await _run(target_url, policy, on_batch=crash_after_three)
    # The process "restarts" later: same cut-off and purge time (stored with the run), new clock.
    outcome, _ = await _run(target_url, policy, cursor=persisted[-1])

    assert outcome.finished
    async with engine_for(target_url) as engine, engine_for(twin_url) as twin:
        assert await snapshot(engine, "sessions") == await snapshot(twin, "sessions")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"age_column": None}, "age_column", "an age column is required"),
        ({"table": "nope"}, "table", "table 'nope' does not exist"),
        ({"age_column": "expired"}, "age_column", "column 'expired' does not exist in table 'sessions'"),
        ({"age_column": "kind"}, "age_column", "not a date or timestamp column"),
        (
            {"filters": (PolicyFilter("colour", "eq", "red"),)},
            "filters[0].column",
            "column 'colour' does not exist",
        ),
        ({"filters": (PolicyFilter("kind", "like", "w%"),)}, "filters[0].op", "unknown operator 'like'"),
        ({"filters": (PolicyFilter("kind", "in", "web"),)}, "filters[0].value", "needs a non-empty list"),
        ({"older_than": "30 days"}, "older_than", "not an ISO 8601 duration"),
        ({"action": "soft_delete"}, "soft_delete_column", "needs soft_delete_column"),
        ({"table": "users", "age_column": "email"}, "age_column", "not a date or timestamp"),
        (
            {"table": "orders", "age_column": "placed_at"},
            "action",
            "order_items(order_id) references it with ON DELETE",
        ),
        (
            {"table": "orders", "age_column": "placed_at", "action": "anonymize"},
            "action",
            "no personal columns in the manifest of 'shop'",
        ),
    ],
)
async def test_policies_the_table_cannot_honour_are_refused(
    target_url: str, overrides: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await _count(target_url, _sessions_policy(**overrides))
    assert message in caught.value.detail
    assert caught.value.extra["errors"][0]["field"] == field


async def test_cascading_references_allow_delete(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cascade.db'}"
    async with engine_for(url) as engine, engine.begin() as connection:
        await connection.exec_driver_sql(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY, created_at TIMESTAMP NOT NULL)"
        )
        await connection.exec_driver_sql(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, "
            "parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE)"
        )
    policy = PurgePolicy(system="s", table="parent", age_column="created_at", older_than="P1Y")
    count, _ = await _count(url, policy)
    assert count == 0


async def test_postgresql_block_ranges_purge_exactly_the_due_rows_and_resume(
    request: pytest.FixtureRequest,
) -> None:
    server = request.getfixturevalue("postgres_server")
    url = await server.create_database("lethe_retention_blocks")
    async with engine_for(url) as engine:
        async with engine.begin() as connection:
            await connection.exec_driver_sql(
                "CREATE TABLE visits (id bigint PRIMARY KEY, kind text NOT NULL, "
                "seen_at timestamp NOT NULL, hidden_at timestamp)"
            )
            await connection.exec_driver_sql(
                "INSERT INTO visits SELECT g, CASE WHEN g % 3 = 0 THEN 'bot' ELSE 'human' END, "
                "now() - (g % 90) * interval '1 day', NULL FROM generate_series(1, 20000) AS g"
            )
            await connection.exec_driver_sql("ANALYZE visits")
            due = set(
                (
                    await connection.exec_driver_sql(
                        "SELECT id FROM visits WHERE seen_at < now() - interval '30 days' AND kind = 'human'"
                    )
                ).scalars()
            )
        policy = PurgePolicy(
            system="s",
            table="visits",
            age_column="seen_at",
            older_than="P30D",
            action="soft_delete",
            soft_delete_column="hidden_at",
            filters=(PolicyFilter("kind", "eq", "human"),),
            batch_size=2000,
        )
        async with engine.connect() as connection:
            prepared = await prepare_purge(connection, policy)
        assert prepared.rows_per_block is not None, "ordinary PostgreSQL tables purge by block ranges"
        cutoff, seen = compute_cutoff("P30D"), []

        async def crash_after_three(report: BatchReport) -> None:
            seen.append(report)
            if len(seen) == 3:
                raise _Crash

        with pytest.raises(_Crash):
            await purge_in_batches(
                engine,
                prepared,
                cutoff=cutoff,
                purge_at=NOW,
                cursor=None,
                limits=LIMITS,
                on_batch=crash_after_three,
            )
        done: list[BatchReport] = []

        async def record(report: BatchReport) -> None:
            done.append(report)

        outcome = await purge_in_batches(
            engine,
            prepared,
            cutoff=cutoff,
            purge_at=NOW,
            cursor=seen[-1].cursor,
            limits=LIMITS,
            on_batch=record,
        )
        async with engine.connect() as connection:
            hidden = set(
                (
                    await connection.exec_driver_sql("SELECT id FROM visits WHERE hidden_at IS NOT NULL")
                ).scalars()
            )
    assert outcome.finished
    assert hidden == due
    assert sum(r.rows for r in seen + done) == len(due)
    assert max(r.rows for r in seen + done) <= 2 * policy.batch_size


@pytest.mark.parametrize("target_url", ["sqlite", "mysql"], indirect=True)
async def test_batches_give_pooled_connections_back_with_their_session_settings(target_url: str) -> None:
    is_mysql = target_url.startswith("mysql")
    read = "SELECT @@SESSION.innodb_lock_wait_timeout" if is_mysql else "PRAGMA busy_timeout"
    write = "SET SESSION innodb_lock_wait_timeout = 33" if is_mysql else "PRAGMA busy_timeout = 33"
    engine = create_async_engine(target_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(write)
            prepared = await prepare_purge(connection, _sessions_policy())

        async def ignore(report: BatchReport) -> None:
            del report

        outcome = await purge_in_batches(
            engine, prepared, cutoff=CUTOFF, purge_at=NOW, cursor=None, limits=LIMITS, on_batch=ignore
        )
        async with engine.connect() as connection:
            value = (await connection.exec_driver_sql(read)).scalar()
    finally:
        await engine.dispose()
    assert outcome.batches > 1
    assert int(value) == 33
