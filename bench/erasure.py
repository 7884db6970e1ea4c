"""Erasure of one subject: Lethe vs hand-written set-based SQL vs effaced 0.1.0, on PostgreSQL.

``LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench.erasure``

One subject owns N rows in each of four tables: ``comments`` and ``sessions`` are deleted,
``orders`` and ``messages`` keep their rows with two personal columns anonymized; the subject's
``users`` row is anonymized (a unique e-mail surrogate). Four other people own N/10 rows each.
Every run starts from the same freshly loaded data (loading is not timed).

* Lethe: what registration and the request worker run, all inside the timed region: one
  reflection of the target, validation with the CHECK proof over that reflection, the plan
  (``app.engine.erasure.plan_erasure``) and ``execute_erasure`` handed the reflection and the plan
  (subject resolution, hop chains, one statement per table and verification), asyncpg.
* hand-written: the same five statements written by hand in one transaction, asyncpg.
* effaced 0.1.0: ``ErasurePlanner.erase_subject`` on ORM models annotated with ``pii()`` and
  ``subject_link()`` (its executor anonymizes row by row), psycopg 3 (it is synchronous).

effaced at the largest size is extrapolated from its per-row time at the middle size when
``LETHE_BENCH_EFFACED_MAX`` (default 20000) is below the size: it is linear in the rows.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from sqlalchemy import ForeignKey, Numeric, String, Text, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from app.engine.check_proof import prove_checks
from app.engine.erasure import ErasureOptions, execute_erasure, plan_erasure
from app.engine.schema_info import Reflection, reflect
from app.manifest.model import Manifest
from app.manifest.validation import validate

__all__ = ("main", "run")

SIZES = tuple(int(n) for n in os.environ.get("LETHE_BENCH_SIZES", "2000,20000,200000").split(","))
REPEATS = 5
OTHERS = 4
SUBJECT = 1
RESULTS = Path(__file__).with_name("RESULTS.md")

SCHEMA = [
    "CREATE TABLE users (id integer PRIMARY KEY, email varchar(255) NOT NULL UNIQUE, "
    "full_name varchar(100) NOT NULL)",
    "CREATE TABLE comments (id integer PRIMARY KEY, user_id integer NOT NULL REFERENCES users(id), "
    "body text NOT NULL)",
    "CREATE TABLE sessions (id integer PRIMARY KEY, user_id integer NOT NULL REFERENCES users(id), "
    "ip_address varchar(45) NOT NULL, user_agent varchar(200) NOT NULL)",
    "CREATE TABLE orders (id integer PRIMARY KEY, user_id integer NOT NULL REFERENCES users(id), "
    "total numeric(10,2) NOT NULL, shipping_name varchar(100) NOT NULL, "
    "shipping_address varchar(200) NOT NULL)",
    "CREATE TABLE messages (id integer PRIMARY KEY, user_id integer NOT NULL REFERENCES users(id), "
    "subject varchar(200) NOT NULL, body text NOT NULL, sent_day integer NOT NULL)",
    "ALTER TABLE users ADD CONSTRAINT ck_users_name CHECK (full_name <> '')",
    "ALTER TABLE orders ADD CONSTRAINT ck_orders_total CHECK (total >= 0)",
    "ALTER TABLE orders ADD CONSTRAINT ck_orders_name CHECK (char_length(shipping_name) > 0)",
    "ALTER TABLE messages ADD CONSTRAINT ck_messages_subject CHECK (subject !~ '[<>]')",
    "CREATE INDEX ix_comments_user ON comments(user_id)",
    "CREATE INDEX ix_sessions_user ON sessions(user_id)",
    "CREATE INDEX ix_orders_user ON orders(user_id)",
    "CREATE INDEX ix_messages_user ON messages(user_id)",
]

MANIFEST = {
    "system": "bench",
    "connection": {"env": "LETHE_BENCH_TARGET_URL"},
    "subject": {"table": "users", "key": "id", "identities": {"user_id": "id"}},
    "tables": {
        "users": {
            "strategy": "anonymize",
            "columns": {
                "email": {"category": "user.contact.email", "surrogate": "email"},
                "full_name": {"category": "user.name"},
            },
        },
        "comments": {"strategy": "delete", "columns": {"body": {"category": "user.content"}}},
        "sessions": {
            "strategy": "delete",
            "columns": {
                "ip_address": {"category": "user.device.ip_address"},
                "user_agent": {"category": "user.device"},
            },
        },
        "orders": {
            "strategy": "anonymize",
            "columns": {
                "shipping_name": {"category": "user.name"},
                "shipping_address": {"category": "user.contact.address"},
            },
        },
        "messages": {
            "strategy": "anonymize",
            "columns": {
                "subject": {"category": "user.content"},
                "body": {"category": "user.content"},
            },
        },
    },
}

HAND_WRITTEN = [
    "DELETE FROM comments WHERE user_id = $1",
    "DELETE FROM sessions WHERE user_id = $1",
    "UPDATE orders SET shipping_name = 'redacted', shipping_address = 'redacted' WHERE user_id = $1",
    "UPDATE messages SET subject = 'redacted', body = 'redacted' WHERE user_id = $1",
    "UPDATE users SET email = 'erased-' || id || '@invalid.example', full_name = 'redacted' WHERE id = $1",
]


# --- data ----------------------------------------------------------------------------------


async def _load(dsn: str, size: int, *, keep_schema: bool = False) -> None:
    """Recreate the schema (``keep_schema``: empty its tables) and load ``size`` rows per table for
    the subject (COPY)."""
    conn = await asyncpg.connect(dsn)
    try:
        if keep_schema:
            await conn.execute("TRUNCATE messages, orders, sessions, comments, users")
        else:
            await conn.execute("DROP TABLE IF EXISTS messages, orders, sessions, comments, users CASCADE")
            for statement in SCHEMA:
                await conn.execute(statement)
        people = [(p, f"person{p}@example.com", f"Person {p}") for p in range(1, OTHERS + 2)]
        await conn.copy_records_to_table("users", records=people)
        owners = [(SUBJECT, size)] + [(p, max(size // 10, 1)) for p in range(2, OTHERS + 2)]
        rows: dict[str, list[tuple[Any, ...]]] = {
            "comments": [],
            "sessions": [],
            "orders": [],
            "messages": [],
        }
        next_id = 1
        for owner, count in owners:
            for i in range(count):
                rows["comments"].append((next_id, owner, f"comment {i} by {owner}"))
                rows["sessions"].append((next_id, owner, f"10.0.{i % 250}.{owner}", "Mozilla/5.0"))
                rows["orders"].append(
                    (next_id, owner, Decimal("19.90"), f"Person {owner}", f"{i} Main Street")
                )
                rows["messages"].append((next_id, owner, f"hello {i}", f"message body {i}", i % 365))
                next_id += 1
        for table, records in rows.items():
            await conn.copy_records_to_table(table, records=records)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


# --- the three contenders ------------------------------------------------------------------


SECRET = "bench-secret-bench-secret-bench-secret"  # noqa: S105


async def _validation(engine: AsyncEngine, manifest: Manifest) -> Reflection:
    """What registration runs against the target: one reflection, validation, the CHECK proof."""
    async with engine.connect() as conn:
        reflection = await reflect(conn)
        _, issues = validate(manifest, reflection.schema)
        issues += await prove_checks(conn, manifest, reflection.schema, SECRET, tables=reflection.tables)
    errors = [i for i in issues if i.severity == "error"]
    assert not errors, errors
    return reflection


async def _lethe(engine: AsyncEngine, manifest: Manifest) -> None:
    """Validation, the plan and execution over the one reflection (what the worker hands on)."""
    reflection = await _validation(engine, manifest)
    options = ErasureOptions(secret=SECRET, batch_threshold=10**9)
    identities = {"user_id": str(SUBJECT)}
    async with engine.connect() as conn:
        plan = await plan_erasure(conn, manifest, identities, options, reflection=reflection)
    outcome = await execute_erasure(engine, manifest, identities, options, reflection=reflection, plan=plan)
    assert outcome.verified, outcome


async def _time_hand_written(dsn: str, size: int) -> float:
    """Median seconds of the hand-written statements in one transaction, on a connection opened
    before the timed region (as Lethe's pool holds one)."""
    times = []
    for _ in range(REPEATS):
        await _load(dsn, size)
        conn = await asyncpg.connect(dsn)
        try:
            start = time.perf_counter()
            async with conn.transaction():
                for statement in HAND_WRITTEN:
                    await conn.execute(statement, SUBJECT)
            times.append(time.perf_counter() - start)
        finally:
            await conn.close()
        await _check_erased(dsn)
    return statistics.median(times)


def _effaced_models() -> Any:
    """ORM models of the same schema, annotated the way effaced expects."""
    from effaced import ErasureStrategy, PiiCategory, pii, subject_link

    anonymize = ErasureStrategy.ANONYMIZE

    class Base(DeclarativeBase):
        pass

    class User(Base):
        __tablename__ = "users"
        __table_args__ = {"info": subject_link("")}
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(String(255), info=pii(PiiCategory.CONTACT, erasure=anonymize))
        full_name: Mapped[str] = mapped_column(String(100), info=pii(PiiCategory.IDENTITY, erasure=anonymize))

    class Comment(Base):
        __tablename__ = "comments"
        __table_args__ = {"info": subject_link("user")}
        id: Mapped[int] = mapped_column(primary_key=True)
        user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
        body: Mapped[str] = mapped_column(Text, info=pii(PiiCategory.BEHAVIORAL))
        user: Mapped[User] = relationship()

    class LoginSession(Base):
        __tablename__ = "sessions"
        __table_args__ = {"info": subject_link("user")}
        id: Mapped[int] = mapped_column(primary_key=True)
        user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
        ip_address: Mapped[str] = mapped_column(String(45), info=pii(PiiCategory.TECHNICAL))
        user_agent: Mapped[str] = mapped_column(String(200), info=pii(PiiCategory.TECHNICAL))
        user: Mapped[User] = relationship()

    class Order(Base):
        __tablename__ = "orders"
        __table_args__ = {"info": subject_link("user")}
        id: Mapped[int] = mapped_column(primary_key=True)
        user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
        total: Mapped[Decimal] = mapped_column(Numeric(10, 2))
        shipping_name: Mapped[str] = mapped_column(
            String(100), info=pii(PiiCategory.IDENTITY, erasure=anonymize)
        )
        shipping_address: Mapped[str] = mapped_column(
            String(200), info=pii(PiiCategory.CONTACT, erasure=anonymize)
        )
        user: Mapped[User] = relationship()

    class Message(Base):
        __tablename__ = "messages"
        __table_args__ = {"info": subject_link("user")}
        id: Mapped[int] = mapped_column(primary_key=True)
        user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
        subject: Mapped[str] = mapped_column(String(200), info=pii(PiiCategory.BEHAVIORAL, erasure=anonymize))
        body: Mapped[str] = mapped_column(Text, info=pii(PiiCategory.BEHAVIORAL, erasure=anonymize))
        sent_day: Mapped[int] = mapped_column()
        user: Mapped[User] = relationship()

    return Base, (User, Comment, LoginSession, Order, Message)  # the registry holds mappers weakly


class _MemorySink:
    """effaced's AuditSink protocol, in memory (its database sink would add commits to its time)."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def append(self, event: Any) -> None:
        self.events.append(event)

    def read(self, subject_ref: str) -> list[Any]:
        return [e for e in self.events if getattr(e, "subject_ref", None) == subject_ref]


def _effaced_runner(sync_url: str) -> Callable[[], None]:
    from effaced import ErasureExecutor, ErasurePlanner, collect_data_map, resolve_subject_graph
    from effaced.saga import Outbox

    base, models = _effaced_models()
    engine = create_engine(sync_url)
    sessions = sessionmaker(engine)
    data_map = collect_data_map(base.metadata)
    graph = resolve_subject_graph(data_map, base.registry)
    planner = ErasurePlanner(
        data_map,
        graph,
        executor=ErasureExecutor(base.metadata),
        outbox=Outbox(sessions, base.metadata.tables["users"]),  # no resolvers: never written
        audit_sink=_MemorySink(),
    )

    def erase() -> None:
        assert models
        with sessions() as session, session.begin():
            planner.erase_subject(session, str(SUBJECT))

    return erase


# --- measuring -----------------------------------------------------------------------------


async def _check_erased(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for table in ("comments", "sessions"):
            left = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE user_id = $1", SUBJECT)
            assert left == 0, table
        email = await conn.fetchval("SELECT email FROM users WHERE id = $1", SUBJECT)
        assert email != f"person{SUBJECT}@example.com"
        kept = await conn.fetchval(
            "SELECT count(*) FROM orders WHERE shipping_name = $1", f"Person {SUBJECT}"
        )
        assert kept == 0
    finally:
        await conn.close()


async def _time(dsn: str, size: int, action: Callable[[], Any], *, erases: bool = True) -> float:
    times = []
    for _ in range(REPEATS):
        await _load(dsn, size)
        start = time.perf_counter()
        result = action()
        if asyncio.iscoroutine(result):
            await result
        times.append(time.perf_counter() - start)
        if erases:
            await _check_erased(dsn)
    return statistics.median(times)


async def _measure(admin_url: str) -> list[dict[str, Any]]:
    name = f"lethe_bench_erasure_{uuid.uuid4().hex[:8]}"
    admin = make_url(admin_url)
    dsn_admin = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn_admin)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    url = admin.set(database=name)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    engine = create_async_engine(url.set(drivername="postgresql+asyncpg"))
    manifest = msgspec.convert(MANIFEST, Manifest)
    effaced_max = _effaced_max()
    effaced = _effaced_runner(url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
    rows: list[dict[str, Any]] = []
    try:
        await _load(dsn, SIZES[0])  # warm the caches and the pools once
        await _lethe(engine, manifest)
        per_row = None
        for size in SIZES:
            lethe = await _time(dsn, size, lambda: _lethe(engine, manifest))
            checks = await _time(dsn, size, lambda: _validation(engine, manifest), erases=False)
            hand = await _time_hand_written(dsn, size)
            if size <= effaced_max:
                peer = await _time(dsn, size, effaced)
                per_row = peer / size
                estimated = False
            else:
                peer = (per_row or 0.0) * size
                estimated = True
            rows.append(
                {
                    "size": size,
                    "lethe": lethe,
                    "checks": checks,
                    "hand": hand,
                    "effaced": peer,
                    "estimated": estimated,
                }
            )
            print(rows[-1], flush=True)
    finally:
        await engine.dispose()
        conn = await asyncpg.connect(dsn_admin)
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()
    return rows


def _effaced_max() -> int:
    return int(os.environ.get("LETHE_BENCH_EFFACED_MAX", "20000"))


def _section(rows: list[dict[str, Any]], start_load: float) -> str:
    lines = [
        "## Erasure: Lethe vs hand-written SQL vs effaced 0.1.0 (PostgreSQL)",
        "",
        "`LETHE_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench.erasure`"
        " — one subject owning N rows in each of `comments`, `sessions` (deleted), `orders`, "
        "`messages` (two columns anonymized), plus its `users` row (anonymized); four other "
        f"people own N/10 rows each; `users`, `orders` and `messages` carry four CHECK constraints. "
        f"Median of {REPEATS} runs, each on freshly loaded data. Lethe's timed region holds "
        "validation against the target (one reflection, the manifest checks, and the proof in the "
        "database that every surrogate satisfies every CHECK, over every row of the anonymized "
        "tables), the plan (subject resolution, counts, outside references, the statements as SQL) "
        "and execution over the same reflection and plan (the statements and verification); the "
        "validation column is that validation alone. effaced runs `ErasurePlanner.erase_subject` (row-by-row "
        "anonymization) over psycopg 3.",
        "",
        "| rows per table | Lethe | of which validation | hand-written SQL | effaced 0.1.0 "
        "| Lethe / hand-written | effaced / Lethe |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        mark = " (extrapolated)" if row["estimated"] else ""
        lines.append(
            f"| {row['size']:,} | {row['lethe'] * 1000:.0f} ms | {row['checks'] * 1000:.0f} ms | "
            f"{row['hand'] * 1000:.0f} ms | "
            f"{row['effaced'] * 1000:.0f} ms{mark} | {row['lethe'] / row['hand']:.2f}x | "
            f"{row['effaced'] / row['lethe']:.1f}x |"
        )
    lines += [
        "",
        "The hand-written statements run on a connection opened before the timed region. At "
        "200,000 rows this table keeps Lethe in one transaction; the batched path production takes "
        "there is measured by `python -m bench erasure_batched` (below).",
        "",
        "Goals at 20,000 rows: Lethe within 1.5x of the hand-written SQL and at least 20x faster "
        "than effaced. effaced at sizes above `LETHE_BENCH_EFFACED_MAX` (default 20,000; "
        f"{_effaced_max():,} in this run) is extrapolated linearly from its per-row time at the "
        "largest size it ran (its cost is one UPDATE per "
        f"anonymized row; at 200,000 that is about 20 minutes per repetition). Machine: "
        f"{os.cpu_count()} CPUs, load average {start_load:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end of the run.",
    ]
    return "\n".join(lines)


def run() -> str:
    """Run the benchmark and return its RESULTS.md section."""
    url = os.environ.get("LETHE_BENCH_POSTGRES_URL")
    if not url:
        raise SystemExit("set LETHE_BENCH_POSTGRES_URL=postgresql://user@host:5432/postgres")
    start_load = os.getloadavg()[0]
    return _section(asyncio.run(_measure(url)), start_load)


def main() -> int:
    """Run and update this benchmark's section of RESULTS.md."""
    from bench.__main__ import update_section

    section = run()
    print(section)
    document = RESULTS.read_text() if RESULTS.exists() else ""
    RESULTS.write_text(update_section(document, "erasure", section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
