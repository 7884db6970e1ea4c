"""Helpers for audit tests: appending, and tampering as a table owner could."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.domain.audit.sequencer import sequence_now
from app.domain.audit.services import append

__all__ = ("append_events", "as_owner")


async def append_events(engine: AsyncEngine, count: int, **fields: object) -> None:
    """Append ``count`` committed events, one transaction each, and link them into the chain."""
    for index in range(count):
        async with AsyncSession(engine) as session:
            await append(
                session,
                action=str(fields.get("action", "test.event")),
                actor="test-operator",
                payload={"index": index, "table": "users"},
            )
            await session.commit()
    await sequence_now(engine)


async def as_owner(engine: AsyncEngine, table: str, *statements: str) -> None:
    """Run statements with the append-only triggers of ``table`` out of the way, as an owner can.

    PostgreSQL: ``ALTER TABLE ... DISABLE TRIGGER USER``. SQLite: drop the triggers and recreate
    them from their stored definition.
    """
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            for statement in statements:
                await connection.execute(text(statement))
            await connection.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
            return
        triggers = (
            await connection.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
                {"t": table},
            )
        ).all()
        for name, _ in triggers:
            await connection.execute(text(f"DROP TRIGGER {name}"))
        for statement in statements:
            await connection.execute(text(statement))
        for _, sql in triggers:
            await connection.execute(text(sql))
