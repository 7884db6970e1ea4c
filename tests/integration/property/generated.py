"""Generated target schemas and data for the erasure property test: a subject table with columns
of every kind, and child tables of every link shape (direct, composite key, self reference, join
table, rows shared by two subjects), spread over one to three schemas."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import (
    CHAR,
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Enum,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import ARRAY, CIDR, INET
from sqlalchemy.types import TypeEngine

__all__ = ("CHILD_KINDS", "SUBJECT_COLUMNS", "Design", "build_metadata", "designs", "rows_for")

SUBJECT_COLUMNS = (
    "username",
    "ext_id",
    "settings",
    "score",
    "ip_address",
    "avatar",
    "is_vip",
    "seen_at",
    "country",
    "balance",
    "wakes",
    "tags",
    "home_net",
    "tier",
)
"""Optional columns of the subject table (each drawn in or out)."""
CHILD_KINDS = ("addresses", "accounts", "folders", "teams", "messages")

_SAFE = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .'-_", min_size=4, max_size=16
)


@dataclass(frozen=True)
class Design:
    """One generated schema: which optional parts exist and where each table lives."""

    schemas: tuple[str | None, ...]
    subject_columns: tuple[str, ...]
    children: dict[str, str | None] = field(default_factory=dict)
    """child kind -> schema it lives in"""
    people: int = 4
    seed: int = 0

    def schema_of(self, kind: str) -> str | None:
        """The schema of ``kind``'s tables (None: the default one)."""
        return self.schemas[0] if kind == "person" else self.children[kind]

    def created_in(self, kind: str, default: str | None) -> str | None:
        """The schema to create ``kind``'s tables in: MariaDB resolves an unqualified reference in
        the referencing table's database, so there the default one is named (``default``)."""
        return self.schema_of(kind) or default

    def key(self, table: str, kind: str) -> str:
        """How a manifest names the table: schema-qualified outside the default schema."""
        schema = self.schema_of(kind)
        return table if schema is None else f"{schema}.{table}"


@st.composite
def designs(draw: st.DrawFn, named: tuple[str, ...]) -> Design:
    """A design over the default schema plus one or two of ``named`` (none given: one schema)."""
    extra = draw(st.lists(st.sampled_from(named), unique=True, min_size=1, max_size=2)) if named else []
    schemas: tuple[str | None, ...] = (None, *extra)
    columns = tuple(c for c in SUBJECT_COLUMNS if draw(st.booleans()))
    kinds = draw(st.lists(st.sampled_from(CHILD_KINDS), unique=True, min_size=1, max_size=4))
    children = {kind: draw(st.sampled_from(schemas)) for kind in kinds}
    return Design(schemas, columns, children, draw(st.integers(3, 5)), draw(st.integers(0, 2**16)))


def _uuid_type(dialect: str) -> TypeEngine[Any]:
    return Uuid() if dialect == "postgresql" else String(36)


def _ip_type(dialect: str) -> TypeEngine[Any]:
    return INET() if dialect == "postgresql" else String(45)


def _array_type(dialect: str) -> TypeEngine[Any]:
    return ARRAY(Text) if dialect == "postgresql" else JSON()


def _network_type(dialect: str) -> TypeEngine[Any]:
    return CIDR() if dialect == "postgresql" else String(43)


TIERS = ("tier_none", "tier_gold", "tier_silver")
"""Enum labels: people hold the last two; the first is what an erased row may take."""
_COUNTRY_LETTERS = "GHJKLMNPQSUVWYZ"
"""Two-letter codes from letters no surrogate writes (no hex digit, no letter of redacted/erased)."""


def _subject_table(metadata: MetaData, design: Design, dialect: str, default: str | None) -> None:
    schema = design.created_in("person", default)
    optional: dict[str, list[Any]] = {
        "username": [
            Column("username", String(24), nullable=False),
            UniqueConstraint("username", name="uq_person_username"),
            CheckConstraint("length(username) >= 3", name="ck_person_username"),
        ],
        "ext_id": [
            Column("ext_id", _uuid_type(dialect), nullable=False),
            UniqueConstraint("ext_id", name="uq_person_ext_id"),
        ],
        "settings": [Column("settings", JSON)],
        "score": [
            Column("score", Integer, nullable=False),
            CheckConstraint("score >= 0", name="ck_person_score"),
        ],
        "ip_address": [Column("ip_address", _ip_type(dialect))],
        "avatar": [Column("avatar", LargeBinary)],
        "is_vip": [Column("is_vip", Boolean, nullable=False)],
        "seen_at": [Column("seen_at", DateTime(timezone=True))],
        "country": [Column("country", CHAR(2), nullable=False)],
        "balance": [
            Column("balance", Numeric(10, 2), nullable=False),
            CheckConstraint("balance >= 0", name="ck_person_balance"),
        ],
        "wakes": [Column("wakes", Time)],
        "tags": [Column("tags", _array_type(dialect))],
        "home_net": [Column("home_net", _network_type(dialect))],
        "tier": [Column("tier", Enum(*TIERS, name="person_tier", schema=schema))],
    }
    parts: list[Any] = [
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("email", String(60), nullable=False),
        Column("full_name", String(40), nullable=False),
        Column("phone", String(20)),
        Column("birth_date", Date),
        Column("created_at", DateTime, nullable=False),
        UniqueConstraint("email", name="uq_person_email"),
    ]
    for name in design.subject_columns:
        parts += optional[name]
    Table("person", metadata, *parts, schema=schema)


def _fk(
    columns: list[str], design: Design, table: str, kind: str, refs: list[str], name: str, default: str | None
) -> ForeignKeyConstraint:
    schema = design.created_in(kind, default)
    target = table if schema is None else f"{schema}.{table}"
    return ForeignKeyConstraint(columns, [f"{target}.{c}" for c in refs], name=name)


def build_metadata(design: Design, dialect: str, default: str | None = None) -> MetaData:
    """The tables of ``design`` for ``dialect`` (types each database offers natively); ``default``
    names the default schema where references must be qualified (MariaDB)."""
    metadata = MetaData()
    _subject_table(metadata, design, dialect, default)
    person = ["person_id"]
    for kind in design.children:
        schema = design.created_in(kind, default)
        to_person = _fk(person, design, "person", "person", ["id"], f"fk_{kind}_person", default)
        if kind == "addresses":
            Table(
                "addresses",
                metadata,
                Column("id", Integer, primary_key=True, autoincrement=False),
                Column("person_id", Integer, nullable=False),
                Column("street", String(60), nullable=False),
                Column("city", String(40)),
                to_person,
                schema=schema,
            )
        elif kind == "accounts":
            Table(
                "accounts",
                metadata,
                Column("tenant_id", Integer, primary_key=True, autoincrement=False),
                Column("id", Integer, primary_key=True, autoincrement=False),
                Column("person_id", Integer, nullable=False),
                Column("iban", String(34), nullable=False),
                UniqueConstraint("iban", name="uq_accounts_iban"),
                to_person,
                schema=schema,
            )
            Table(
                "account_entries",
                metadata,
                Column("id", Integer, primary_key=True, autoincrement=False),
                Column("tenant_id", Integer, nullable=False),
                Column("account_id", Integer, nullable=False),
                Column("memo", Text),
                Column("amount_cents", Integer, nullable=False),
                CheckConstraint("amount_cents <> 0", name="ck_account_entries_amount"),
                _fk(
                    ["tenant_id", "account_id"],
                    design,
                    "accounts",
                    kind,
                    ["tenant_id", "id"],
                    "fk_entries_account",
                    default,
                ),
                schema=schema,
            )
        elif kind == "folders":
            Table(
                "folders",
                metadata,
                Column("id", Integer, primary_key=True, autoincrement=False),
                Column("person_id", Integer, nullable=False),
                Column("parent_id", Integer),
                Column("title", String(40), nullable=False),
                to_person,
                _fk(["parent_id"], design, "folders", kind, ["id"], "fk_folders_parent", default),
                schema=schema,
            )
        elif kind == "teams":
            Table(
                "teams",
                metadata,
                Column("id", Integer, primary_key=True, autoincrement=False),
                Column("title", String(40), nullable=False),
                schema=schema,
            )
            Table(
                "team_members",
                metadata,
                Column("team_id", Integer, primary_key=True, autoincrement=False),
                Column("person_id", Integer, primary_key=True, autoincrement=False),
                Column("nickname", String(30)),
                to_person,
                _fk(["team_id"], design, "teams", kind, ["id"], "fk_team_members_team", default),
                schema=schema,
            )
        else:
            Table(
                "messages",
                metadata,
                Column("id", Integer, primary_key=True, autoincrement=False),
                Column("sender_id", Integer, nullable=False),
                Column("recipient_id", Integer, nullable=False),
                Column("body", Text, nullable=False),
                _fk(["sender_id"], design, "person", "person", ["id"], "fk_messages_sender", default),
                _fk(["recipient_id"], design, "person", "person", ["id"], "fk_messages_recipient", default),
                schema=schema,
            )
    return metadata


def _person(data: st.DataObject, index: int, design: Design, dialect: str) -> dict[str, Any]:
    text = data.draw(_SAFE)
    row: dict[str, Any] = {
        "id": index,
        "email": f"p{index}.{text.replace(' ', '').replace(chr(39), '')[:20]}@example.org",
        "full_name": f"{text} {index}"[:40],
        "phone": data.draw(st.one_of(st.none(), st.from_regex(r"\+49[0-9]{8,12}", fullmatch=True))),
        "birth_date": data.draw(st.one_of(st.none(), st.dates(date(1930, 1, 1), date(2010, 1, 1)))),
        "created_at": datetime(2024, 1, index, 8, 30),  # noqa: DTZ001 - a naive TIMESTAMP column
    }
    extra: dict[str, Any] = {
        "username": f"u{index}_{data.draw(st.from_regex(r'[a-z]{3,10}', fullmatch=True))}",
        "ext_id": _uuid(uuid.UUID(int=(data.draw(st.integers(0, 2**119)) << 8) | index, version=4), dialect),
        "settings": {"theme": data.draw(_SAFE), "person": index},
        "score": data.draw(st.integers(0, 10_000)),
        "ip_address": f"10.{index}.{data.draw(st.integers(0, 255))}.{data.draw(st.integers(1, 254))}",
        "avatar": data.draw(st.binary(min_size=1, max_size=24)),
        "is_vip": data.draw(st.booleans()),
        "seen_at": datetime(2025, 2, index, 12, 0, tzinfo=UTC),
        "country": "".join(data.draw(st.sampled_from(_COUNTRY_LETTERS)) for _ in range(2)),
        "balance": Decimal(data.draw(st.integers(0, 10**8))) / 100,
        "wakes": time(data.draw(st.integers(0, 23)), data.draw(st.integers(0, 59))),
        "tags": [f"tag{index}_{data.draw(st.from_regex(r'[a-z]{3,8}', fullmatch=True))}"],
        "home_net": f"10.{index}.{data.draw(st.integers(0, 255))}.0/24",
        "tier": data.draw(st.sampled_from(TIERS[1:])),
    }
    return row | {c: extra[c] for c in design.subject_columns}


def _uuid(value: uuid.UUID, dialect: str) -> uuid.UUID | str:
    return value if dialect == "postgresql" else str(value)


def rows_for(data: st.DataObject, design: Design, dialect: str) -> dict[str, list[dict[str, Any]]]:
    """Rows per table name: several people, each with rows in every child table, shared rows."""
    people = range(1, design.people + 1)
    rows: dict[str, list[dict[str, Any]]] = {"person": [_person(data, i, design, dialect) for i in people]}
    counter = iter(range(1, 10_000))
    for kind in design.children:
        if kind == "addresses":
            rows["addresses"] = [
                {
                    "id": next(counter),
                    "person_id": p,
                    "street": f"{data.draw(_SAFE)} {p}",
                    "city": data.draw(_SAFE),
                }
                for p in people
                for _ in range(data.draw(st.integers(0, 2)))
            ]
        elif kind == "accounts":
            rows["accounts"] = [
                {
                    "tenant_id": 1 + p % 2,
                    "id": p,
                    "person_id": p,
                    "iban": f"DE{p:04d}{data.draw(st.integers(10**9, 10**10))}",
                }
                for p in people
            ]
            rows["account_entries"] = [
                {
                    "id": next(counter),
                    "tenant_id": 1 + p % 2,
                    "account_id": p,
                    "memo": data.draw(st.one_of(st.none(), _SAFE)),
                    "amount_cents": data.draw(st.integers(1, 9_999)),
                }
                for p in people
                for _ in range(data.draw(st.integers(0, 3)))
            ]
        elif kind == "folders":
            rows["folders"] = []
            for p in people:
                parent = None
                for _ in range(data.draw(st.integers(0, 3))):
                    folder = {
                        "id": next(counter),
                        "person_id": p,
                        "parent_id": parent,
                        "title": data.draw(_SAFE),
                    }
                    rows["folders"].append(folder)
                    parent = folder["id"]
        elif kind == "teams":
            rows["teams"] = [{"id": t, "title": f"team {t}"} for t in (1, 2)]
            rows["team_members"] = [
                {"team_id": t, "person_id": p, "nickname": data.draw(st.one_of(st.none(), _SAFE))}
                for p in people
                for t in (1, 2)
                if data.draw(st.booleans())
            ]
        else:
            rows["messages"] = [
                {"id": next(counter), "sender_id": s, "recipient_id": r, "body": data.draw(_SAFE)}
                for s in people
                for r in people
                if s != r and data.draw(st.booleans())
            ]
    return rows
