"""A worker's cached reflection on SQLite, PostgreSQL and MariaDB: reused while the catalog is
unchanged, taken again as soon as a column or a foreign key appears (the plan sees it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.engine.dialects import dialect_of
from app.engine.erasure import ErasureOptions, plan_erasure
from app.engine.erasure.model import plan_document
from app.engine.reflection_cache import REFLECTIONS, ReflectionCache
from app.engine.schema_info import reflect
from app.manifest.names import manifest_schemas
from tests.integration.erasure import schema
from tests.integration.erasure.conftest import seeded_shop

OPTIONS = ErasureOptions(secret="reflection-cache-test-secret-0123456789")
SUBJECT = {"user_id": "1"}


@pytest.fixture
async def shop(target_url: str, tmp_path: Any) -> AsyncIterator[AsyncEngine]:
    async with seeded_shop(target_url, tmp_path, 3) as engine:
        yield engine


def _reflected() -> float:
    return REFLECTIONS.labels(outcome="reflected")._value.get()


async def _plan(conn: AsyncConnection, cache: ReflectionCache) -> dict[str, Any]:
    manifest = schema.manifest()
    reflection = await cache.reflection(conn, "shop", 1, manifest_schemas(manifest))
    return plan_document(await plan_erasure(conn, manifest, SUBJECT, OPTIONS, reflection=reflection))


async def test_fingerprint_is_stable_and_moves_with_every_kind_of_ddl(shop: AsyncEngine) -> None:
    async with shop.connect() as conn:
        dialect = dialect_of(conn)
        seen = [await dialect.schema_fingerprint(conn)]
        assert await dialect.schema_fingerprint(conn) == seen[0]
        for ddl in (
            "ALTER TABLE users ADD COLUMN nickname VARCHAR(20)",
            "CREATE TABLE likes (id INTEGER PRIMARY KEY, comment_id INTEGER)",
            "CREATE UNIQUE INDEX likes_comment ON likes (comment_id)",
            "DROP TABLE likes",
            "CREATE TABLE likes (id INTEGER PRIMARY KEY, comment_id INTEGER, "
            "CONSTRAINT fk_likes_comment FOREIGN KEY (comment_id) REFERENCES comments (id))",
        ):
            await conn.execute(text(ddl))
            await conn.commit()
            seen.append(await dialect.schema_fingerprint(conn))
    assert all(before != after for before, after in pairwise(seen)), seen


async def test_cached_reflection_is_reused_until_a_column_appears(shop: AsyncEngine) -> None:
    cache = ReflectionCache()
    manifest = schema.manifest()
    async with shop.connect() as conn:
        first = await cache.reflection(conn, "shop", 1, manifest_schemas(manifest))
        before = _reflected()
        assert await cache.reflection(conn, "shop", 1, manifest_schemas(manifest)) is first
        assert _reflected() == before
        await conn.execute(text("ALTER TABLE users ADD COLUMN nickname VARCHAR(20)"))
        await conn.commit()
        second = await cache.reflection(conn, "shop", 1, manifest_schemas(manifest))
    assert second is not first
    assert _reflected() == before + 1
    assert "nickname" in second.tables["users"].c
    assert "nickname" not in first.tables["users"].c


async def test_plan_over_the_cache_sees_a_new_foreign_key_into_erased_rows(shop: AsyncEngine) -> None:
    """A table created after the reflection was cached, referencing the subject's comments:
    erasing them must be blocked, as a fresh reflection finds (the stale one would not)."""
    cache = ReflectionCache()
    async with shop.connect() as conn:
        stale = await _plan(conn, cache)
        assert stale["blocked"] is None
        await conn.execute(
            text(
                "CREATE TABLE likes (id INTEGER PRIMARY KEY, comment_id INTEGER, "
                "CONSTRAINT fk_likes_comment FOREIGN KEY (comment_id) REFERENCES comments (id))"
            )
        )
        await conn.execute(text("INSERT INTO likes (id, comment_id) VALUES (1, 10)"))
        await conn.commit()
        cached = await _plan(conn, cache)
        fresh = plan_document(
            await plan_erasure(
                conn,
                schema.manifest(),
                SUBJECT,
                OPTIONS,
                reflection=await reflect(conn, manifest_schemas(schema.manifest())),
            )
        )
    assert cached["blocked"] is not None
    assert "fk_likes_comment" in cached["blocked"]
    assert cached == fresh


async def test_forget_drops_a_systems_entries(shop: AsyncEngine) -> None:
    cache = ReflectionCache()
    async with shop.connect() as conn:
        first = await cache.reflection(conn, "shop", 1)
        cache.forget("other")
        assert await cache.reflection(conn, "shop", 1) is first
        cache.forget("shop")
        assert await cache.reflection(conn, "shop", 1) is not first
