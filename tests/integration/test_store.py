"""The service store: migrations build the schema, and models never drift from them."""

from __future__ import annotations

import uuid
from typing import Any

from advanced_alchemy.base import metadata_registry
from advanced_alchemy.types import GUID
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import column, insert, select
from sqlalchemy import table as sql_table
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import TableClause

import app.db  # noqa: F401  (registers every model)
from app.db.external import ExternalTask
from app.db.requests import SubjectRequest
from app.db.store import current_revision, head_revision, migrate_store, upgrade_store
from app.lib.clock import utcnow


def _compare_type(context: Any, _inspected: Any, _column: Any, _reflected: Any, declared: Any) -> bool | None:
    """GUID is BINARY(16) on SQLite, which reflects as NUMERIC(16): not a drift."""
    if isinstance(declared, GUID) and context.dialect.name == "sqlite":
        return False
    return None


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": _compare_type})
    return list(compare_metadata(context, metadata_registry.get(None)))


async def test_store_is_at_the_shipped_head(store_engine: AsyncEngine) -> None:
    assert await current_revision(store_engine) == head_revision()


async def test_models_and_migrations_agree(store_engine: AsyncEngine) -> None:
    async with store_engine.connect() as connection:
        diff = await connection.run_sync(_diff)
    assert diff == [], f"models and migrations differ: {diff}"


def _columns(table: Any, keys: list[str]) -> TableClause:
    return sql_table(table.name, *(column(key, table.c[key].type) for key in keys))


async def test_requests_stored_before_holds_tasks_keep_their_tasks_visible(store_engine: AsyncEngine) -> None:
    """0016 marks the requests that already hold external tasks, so their tasks are still read,
    opened, cancelled and cleared; the others are marked as holding none. On SQLite the upgrade
    rebuilds ``subject_request``: the tasks referring to it survive (foreign keys off meanwhile)."""
    await migrate_store(store_engine, "downgrade", "0015_external_parts")
    now = utcnow()
    with_task, without = uuid.uuid4(), uuid.uuid4()
    request = {
        "kind": "erasure",
        "status": "queued",
        "received_at": now,
        "due_at": now,
        "systems": [],
        "manifest_versions": {},
        "dry_run": False,
        "client_id": "svc",
        "actor": "svc",
        "subject_ref": "ref",
        "identity_types": ["email"],
        "attempt": 0,
        "updated_at": now,
    }
    task = {
        "system": "zendesk",
        "id": uuid.uuid4(),
        "manifest_version": 1,
        "client_id": "svc",
        "notify": "manual",
        "status": "held",
        "due_at": now,
        "counts": {},
        "created_at": now,
        "updated_at": now,
    }
    requests, tasks = SubjectRequest.__table__, ExternalTask.__table__
    async with store_engine.begin() as connection:  # the columns of 0015, without the models' defaults
        await connection.execute(
            insert(_columns(requests, [*request, "id"])),
            [{**request, "id": with_task}, {**request, "id": without}],
        )
        await connection.execute(
            insert(_columns(tasks, [*task, "request_id"])), {**task, "request_id": with_task}
        )
    await upgrade_store(store_engine)
    async with store_engine.connect() as connection:
        assert (await connection.execute(select(tasks.c.request_id))).scalars().all() == [with_task]
        if store_engine.dialect.name == "sqlite":  # enforced again on the pooled connection
            assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        marked = dict((await connection.execute(select(requests.c.id, requests.c.holds_tasks))).all())
    assert marked == {with_task: True, without: False}
    await migrate_store(store_engine, "downgrade", "0015_external_parts")  # rebuilt once more on SQLite
    async with store_engine.connect() as connection:
        assert (await connection.execute(select(tasks.c.request_id))).scalars().all() == [with_task]
