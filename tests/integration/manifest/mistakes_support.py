"""The planted-mistake manifests of tests/fixtures/mistakes and the demo shop on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Date, DateTime, MetaData, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.demo.shop import SHOP_SCHEMA

__all__ = ("MISTAKES", "SHOP_TABLES", "Mistake", "copy_shop", "shop_rows", "subject_rows")

MISTAKES_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "mistakes"
SHOP_TABLES = ("users", "addresses", "orders", "order_items", "comments", "sessions")


@dataclass(frozen=True)
class Mistake:
    """One planted mistake: its manifest text, where it must be caught, and the words the
    message must contain (table, column and problem)."""

    name: str
    text: str
    caught: str
    names: tuple[str, ...]

    def named_in(self, where: str, message: str) -> bool:
        """Whether one error (its key path and message) names every expected word."""
        said = f"{where} {message}".lower()
        return all(n.lower() in said for n in self.names)


def _mistake(path: Path) -> Mistake:
    text = path.read_text(encoding="utf-8")
    header = dict(
        line[2:].split(":", 1) for line in text.splitlines() if line.startswith("# ") and ":" in line[:12]
    )
    names = tuple(n.strip() for n in header.get("names", "").split(",") if n.strip())
    return Mistake(path.stem, text, header["caught"].strip(), names)


MISTAKES = [_mistake(p) for p in sorted(MISTAKES_DIR.glob("*.yaml"))]


async def copy_shop(source: Path, engine: AsyncEngine) -> None:
    """Copy the demo shop (a SQLite file) into an empty database behind ``engine``."""
    async with engine.begin() as connection:
        for statement in SHOP_SCHEMA.replace("DEFAULT 0", "DEFAULT false").split(";"):
            if statement.strip():
                await connection.execute(text(statement))
        metadata = MetaData()
        await connection.run_sync(lambda sync: metadata.reflect(sync))
        with sqlite3.connect(source) as shop:
            for name in SHOP_TABLES:
                table = metadata.tables[name]
                rows = shop.execute(f"SELECT * FROM {name}").fetchall()
                values = [
                    {c.name: _typed(c.type, v) for c, v in zip(table.columns, row, strict=True)}
                    for row in rows
                ]
                await connection.execute(insert(table), values)


def _typed(column_type: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column_type, DateTime):
        return datetime.fromisoformat(value).replace(tzinfo=None)
    if isinstance(column_type, Date):
        return date.fromisoformat(value)
    if isinstance(column_type, Boolean):
        return bool(value)
    return value


async def shop_rows(engine: AsyncEngine) -> dict[str, dict[Any, tuple[str, ...]]]:
    """Every row of every shop table as text, by primary key."""
    metadata = MetaData()
    snapshot: dict[str, dict[Any, tuple[str, ...]]] = {}
    async with engine.connect() as connection:
        await connection.run_sync(lambda sync: metadata.reflect(sync, only=list(SHOP_TABLES)))
        for name in SHOP_TABLES:
            result = await connection.execute(select(metadata.tables[name]))
            snapshot[name] = {row[0]: tuple(str(v) for v in row) for row in result}
    return snapshot


def subject_rows(before: dict[str, dict[Any, tuple[str, ...]]], user: int) -> dict[str, set[Any]]:
    """Keys of the rows that belong to ``user``, by hand (column 1 is ``user_id``)."""
    owner = str(user)
    owned = {t: {k for k, r in before[t].items() if r[1] == owner} for t in SHOP_TABLES[1:]}
    owned["users"] = {user}
    orders = {str(k) for k in owned["orders"]}
    owned["order_items"] = {k for k, r in before["order_items"].items() if r[1] in orders}
    return owned
