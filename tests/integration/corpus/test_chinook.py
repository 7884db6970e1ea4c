"""Chinook on SQLite: customers exported and erased through the API, each erasure proved."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings
from tests.integration.corpus.support import Corpus, Subject, load_sqlite, run_corpus

CHINOOK = Corpus(
    name="chinook",
    key_sql="SELECT CustomerId FROM Customer WHERE Email = :email",
    footprint_sql={
        "Customer": "SELECT count(*) FROM Customer WHERE Email = :email",
        "Invoice": "SELECT count(*) FROM Invoice i JOIN Customer c ON c.CustomerId = i.CustomerId "
        "WHERE c.Email = :email",
        "InvoiceLine": "SELECT count(*) FROM InvoiceLine l JOIN Invoice i ON i.InvoiceId = l.InvoiceId "
        "JOIN Customer c ON c.CustomerId = i.CustomerId WHERE c.Email = :email",
    },
    subjects=(
        Subject("with a company", {"email": "luisg@embraer.com.br"}),
        Subject("without a company", {"email": "leonekohler@surfeu.de"}),
        Subject("sharing a billing city", {"email": "roberto.almeida@riotur.gov.br"}),
    ),
)


@pytest.fixture
async def chinook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncEngine]:
    """The Chinook subset in a SQLite file, named by the manifest's variable."""
    path = tmp_path / "chinook.db"
    load_sqlite(path, CHINOOK)
    url = f"sqlite+aiosqlite:///{path}"
    monkeypatch.setenv("LETHE_TARGET_CHINOOK_URL", url)
    engine = create_async_engine(url)
    yield engine
    await engine.dispose()


async def test_chinook_customers_are_exported_and_erased(
    client: AsyncTestClient[Litestar],
    auth: Callable[..., dict[str, str]],
    settings: Settings,
    store_engine: AsyncEngine,
    chinook: AsyncEngine,
) -> None:
    footprints = await run_corpus(client, auth, settings, store_engine, chinook, CHINOOK)
    assert all(f["InvoiceLine"] > 0 for f in footprints.values())
