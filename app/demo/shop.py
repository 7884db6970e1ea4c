"""The demo target: a small SQLite shop with a few hundred fake, deterministic people."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ("SHOP_SCHEMA", "create_shop")

SHOP_SCHEMA = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email VARCHAR(120) NOT NULL UNIQUE,
    full_name VARCHAR(120) NOT NULL,
    phone VARCHAR(32),
    birth_date DATE,
    marketing_opt_in BOOLEAN NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE addresses (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    street VARCHAR(200) NOT NULL,
    city VARCHAR(80) NOT NULL,
    postcode VARCHAR(16) NOT NULL,
    country CHAR(2) NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    shipping_address_id INTEGER REFERENCES addresses(id),
    placed_at TIMESTAMP NOT NULL,
    total_cents INTEGER NOT NULL CHECK (total_cents >= 0),
    delivery_note VARCHAR(200)
);
CREATE TABLE order_items (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    sku VARCHAR(32) NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    price_cents INTEGER NOT NULL
);
CREATE TABLE comments (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    ip_address VARCHAR(45) NOT NULL,
    user_agent VARCHAR(200),
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
"""

_FIRST = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Donald",
    "Hedy",
    "Tim",
    "Karen",
    "John",
    "Sophie",
    "Niklaus",
    "Joan",
    "Guido",
]
_LAST = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Knuth",
    "Lamarr",
    "Berners",
    "Jones",
    "Backus",
    "Wilson",
    "Wirth",
    "Clarke",
    "Rossum",
]
_CITIES = [
    ("Berlin", "DE"),
    ("Paris", "FR"),
    ("Madrid", "ES"),
    ("Rome", "IT"),
    ("Vienna", "AT"),
    ("Lisbon", "PT"),
    ("Dublin", "IE"),
    ("Warsaw", "PL"),
]


def _rows(people: int, seed: int) -> dict[str, list[tuple[object, ...]]]:
    rng = random.Random(seed)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    rows: dict[str, list[tuple[object, ...]]] = {
        k: [] for k in ("users", "addresses", "orders", "order_items", "comments", "sessions")
    }
    address_id = order_id = item_id = comment_id = session_id = 0
    for user_id in range(1, people + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        created = now - timedelta(days=rng.randint(30, 1500))
        rows["users"].append(
            (
                user_id,
                f"{first}.{last}.{user_id}@example.com".lower(),
                f"{first} {last}",
                f"+49 30 {rng.randint(1000000, 9999999)}",
                (now - timedelta(days=rng.randint(18 * 365, 80 * 365))).date().isoformat(),
                rng.random() < 0.4,
                created.isoformat(sep=" "),
            )
        )
        address_ids = []
        for _ in range(rng.randint(1, 2)):
            address_id += 1
            city, country = rng.choice(_CITIES)
            rows["addresses"].append(
                (
                    address_id,
                    user_id,
                    f"{rng.randint(1, 200)} Example Street",
                    city,
                    f"{rng.randint(10000, 99999)}",
                    country,
                )
            )
            address_ids.append(address_id)
        for _ in range(rng.randint(0, 4)):
            order_id += 1
            placed = created + timedelta(days=rng.randint(0, 900))
            items = [(rng.randint(1, 3), rng.randint(199, 9999)) for _ in range(rng.randint(1, 3))]
            rows["orders"].append(
                (
                    order_id,
                    user_id,
                    rng.choice(address_ids),
                    placed.isoformat(sep=" "),
                    sum(q * p for q, p in items),
                    rng.choice([None, "Leave at the door"]),
                )
            )
            for quantity, price in items:
                item_id += 1
                rows["order_items"].append(
                    (item_id, order_id, f"SKU-{rng.randint(100, 999)}", quantity, price)
                )
        for _ in range(rng.randint(0, 3)):
            comment_id += 1
            rows["comments"].append(
                (
                    comment_id,
                    user_id,
                    rng.choice(["Great shop!", "Slow delivery.", "Would buy again."]),
                    (created + timedelta(days=rng.randint(0, 500))).isoformat(sep=" "),
                )
            )
        for _ in range(rng.randint(1, 3)):
            session_id += 1
            started = now - timedelta(days=rng.randint(0, 120))
            rows["sessions"].append(
                (
                    session_id,
                    user_id,
                    f"192.0.2.{rng.randint(1, 254)}",
                    "Mozilla/5.0",
                    started.isoformat(sep=" "),
                    (started + timedelta(days=14)).isoformat(sep=" "),
                )
            )
    return rows


def create_shop(path: Path, people: int = 300, seed: int = 7) -> int:
    """Create (or recreate) the shop database at ``path``; returns the number of people."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as connection:
        connection.executescript(SHOP_SCHEMA)
        for table, values in _rows(people, seed).items():
            if values:
                marks = ", ".join("?" * len(values[0]))
                connection.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
    return people
