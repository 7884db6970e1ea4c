"""Pagila on PostgreSQL: customers exported and erased through the API, each erasure proved."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings
from tests.integration.corpus.support import Corpus, Subject, load_postgres, run_corpus
from tests.servers import DatabaseServer

_BY_EMAIL = "(SELECT customer_id FROM customer WHERE email = :email)"
PAGILA = Corpus(
    name="pagila",
    key_sql="SELECT customer_id FROM customer WHERE email = :email",
    footprint_sql={
        "customer": "SELECT count(*) FROM customer WHERE email = :email",
        "address": "SELECT count(*) FROM address a JOIN customer c ON c.address_id = a.address_id "
        "WHERE c.email = :email",
        "rental": f"SELECT count(*) FROM rental WHERE customer_id = {_BY_EMAIL}",
        "payment": f"SELECT count(*) FROM payment WHERE customer_id = {_BY_EMAIL}",
    },
    subjects=(
        Subject("light: one rental", {"email": "AMANDA.CARTER@sakilacustomer.org"}),
        Subject("heavy: ten rentals", {"email": "DEBORAH.WALKER@sakilacustomer.org"}),
        Subject("a name inside other names", {"email": "MARY.SMITH@sakilacustomer.org"}),
    ),
    volatile={"customer": ("last_update",), "address": ("last_update",)},  # trigger last_updated()
)


@pytest.fixture
async def pagila(
    postgres_server: DatabaseServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncEngine]:
    """The Pagila subset in a fresh PostgreSQL database, named by the manifest's variable."""
    url = await postgres_server.create_database("lethe_pagila")
    await load_postgres(url, PAGILA)
    monkeypatch.setenv("LETHE_TARGET_PAGILA_URL", url)
    engine = create_async_engine(url)
    yield engine
    await engine.dispose()


async def test_pagila_customers_are_exported_and_erased(
    client: AsyncTestClient[Litestar],
    auth: Callable[..., dict[str, str]],
    settings: Settings,
    store_engine: AsyncEngine,
    pagila: AsyncEngine,
) -> None:
    footprints = await run_corpus(client, auth, settings, store_engine, pagila, PAGILA)
    assert footprints["light: one rental"]["rental"] == 1
    assert footprints["heavy: ten rentals"]["payment"] == 10
