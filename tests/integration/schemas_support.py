"""A target spread over two named schemas (PostgreSQL schemas, MariaDB databases), its manifest.

``accounts`` holds the subjects and their profiles, ``billing`` invoices, payments and a ``users``
table of its own (a logical reference to the account, no foreign key); the default schema holds a
third, unrelated ``users`` table and ``notes`` with a foreign key into ``accounts``. Tables of the
same name stay distinct; unqualified names mean the default schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.servers import DatabaseServer

__all__ = (
    "ENV",
    "PEOPLE",
    "NamedTarget",
    "create_named_target",
    "named_manifest",
    "snapshot",
    "target_metadata",
)

PEOPLE = 3
ENV = "LETHE_TARGET_NAMED_URL"


@dataclass(frozen=True)
class NamedTarget:
    """Where the target lives: its URL (default schema) and the names of its two named schemas."""

    url: str
    accounts: str
    billing: str

    def key(self, schema: str | None, name: str) -> str:
        """The manifest's name of a table (``None``: the default schema)."""
        return name if schema is None else f"{getattr(self, schema)}.{name}"


def target_metadata(accounts: str, billing: str) -> MetaData:
    """The tables, with cross-schema foreign keys and a mixed-case column (quoting)."""
    metadata = MetaData()
    Table(
        "users",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("email", String(60), nullable=False, unique=True),
        Column("full_name", String(60), nullable=False),
        schema=accounts,
    )
    Table(
        "profiles",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column(
            "user_id", Integer, ForeignKey(f"{accounts}.users.id", name="fk_profiles_user"), nullable=False
        ),
        Column("bio", String(200)),
        schema=accounts,
    )
    Table(
        "invoices",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column(
            "user_id", Integer, ForeignKey(f"{accounts}.users.id", name="fk_invoices_user"), nullable=False
        ),
        Column("amount", Integer, nullable=False),
        Column("billing_name", String(60), nullable=False),
        schema=billing,
    )
    Table(
        "payments",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column(
            "invoice_id",
            Integer,
            ForeignKey(f"{billing}.invoices.id", name="fk_payments_invoice"),
            nullable=False,
        ),
        Column("cardHolder", String(60)),
        schema=billing,
    )
    Table(  # same name as accounts.users: a billing-side copy, linked logically (no FK)
        "users",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("account_id", Integer, nullable=False),
        Column("display_name", String(60), nullable=False),
        schema=billing,
    )
    Table(  # same name again, in the default schema: staff, not data subjects
        "users",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("full_name", String(60), nullable=False),
    )
    Table(
        "notes",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, ForeignKey(f"{accounts}.users.id", name="fk_notes_user"), nullable=False),
        Column("body", String(200), nullable=False),
    )
    return metadata


def _rows(target: NamedTarget) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}

    def add(schema: str | None, name: str, row: dict[str, Any]) -> None:
        rows.setdefault(target.key(schema, name), []).append(row)

    for n in range(1, PEOPLE + 1):
        add("accounts", "users", {"id": n, "email": f"person{n}@example.com", "full_name": f"Person {n}"})
        add("accounts", "profiles", {"id": n, "user_id": n, "bio": f"bio of person {n}"})
        for i in (1, 2):
            add(
                "billing",
                "invoices",
                {"id": 10 * n + i, "user_id": n, "amount": 100 * i, "billing_name": f"P{n}"},
            )
            add(
                "billing",
                "payments",
                {"id": 10 * n + i, "invoice_id": 10 * n + i, "cardHolder": f"Holder {n}"},
            )
        add("billing", "users", {"id": 100 + n, "account_id": n, "display_name": f"Display {n}"})
        add(None, "users", {"id": n, "full_name": f"Staff {n}"})
        add(None, "notes", {"id": n, "user_id": n, "body": f"note about person {n}"})
    return rows


async def create_named_target(kind: str, server: DatabaseServer) -> NamedTarget:
    """A fresh database of ``kind`` with the two named schemas, filled with ``PEOPLE`` subjects."""
    url = await server.create_database("lethe_named")
    if kind == "postgresql":
        target = NamedTarget(url, "accounts", "billing")
        statements = ["CREATE SCHEMA accounts", "CREATE SCHEMA billing"]
    else:  # MariaDB: a schema is a database of the same server
        accounts = await server.create_database("lethe_acc")
        billing = await server.create_database("lethe_bil")
        target = NamedTarget(url, _database(accounts), _database(billing))
        statements = []
    metadata = target_metadata(target.accounts, target.billing)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
            await connection.run_sync(metadata.create_all)
            rows = _rows(target)
            for table in metadata.sorted_tables:
                await connection.execute(insert(table), rows[_key(target, table)])
    finally:
        await engine.dispose()
    return target


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def _key(target: NamedTarget, table: Table) -> str:
    return table.name if table.schema is None else f"{table.schema}.{table.name}"


def named_manifest(target: NamedTarget, env: str = ENV) -> dict[str, Any]:
    """The manifest: qualified keys, a derived cross-schema link, a logical reference between
    schemas, an unqualified table of the default schema, and the default ``users`` left alone."""
    a, b = target.accounts, target.billing
    return {
        "system": "named",
        "connection": {"env": env, "schemas": [a, b]},
        "subject": {"table": f"{a}.users", "key": "id", "identities": {"email": "email", "user_id": "id"}},
        "tables": {
            f"{a}.users": {
                "purpose": "customer account",
                "legal_basis": "contract",
                "columns": {
                    "email": {"category": "user.contact.email", "surrogate": "email", "rectifiable": True},
                    "full_name": {"category": "user.name", "rectifiable": True},
                },
            },
            f"{a}.profiles": {"strategy": "delete", "columns": {"bio": {"category": "user.content"}}},
            f"{b}.invoices": {
                "purpose": "invoicing",
                "legal_basis": "legal obligation",
                "strategy": "retain",
                "retention": {"legal_basis": "tax law", "duration": "P10Y"},
                "columns": {"billing_name": {"category": "user.name", "strategy": "anonymize"}},
            },
            f"{b}.payments": {"strategy": "delete", "columns": {"cardHolder": {"category": "user.name"}}},
            f"{b}.users": {
                "strategy": "delete",
                "link": {"path": [{"from": "account_id", "to": f"{a}.users"}]},
                "columns": {"display_name": {"category": "user.name", "rectifiable": True}},
            },
            "notes": {"strategy": "delete", "columns": {"body": {"category": "user.content"}}},
        },
        "ignore": [{"table": "users", "reason": "staff accounts of the default schema, not data subjects"}],
    }


async def snapshot(target: NamedTarget) -> dict[str, dict[int, tuple[Any, ...]]]:
    """Every row of every table by primary key, keyed by manifest table name."""
    metadata = target_metadata(target.accounts, target.billing)
    engine = create_async_engine(target.url)
    out: dict[str, dict[int, tuple[Any, ...]]] = {}
    try:
        async with engine.connect() as connection:
            for table in metadata.sorted_tables:
                result = await connection.execute(select(table))
                out[_key(target, table)] = {row[0]: tuple(row) for row in result}
    finally:
        await engine.dispose()
    return out
