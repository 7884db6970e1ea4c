"""The erasure checker itself: a correct hand-made erasure passes, every planted defect fails it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.integration.corpus.support import load_sqlite
from tests.integration.corpus.test_chinook import CHINOOK
from tests.integration.erasure_checker import erasure_findings, take_snapshot

SUBJECT = ("1",)
# what the manifest asks for customer 1, written by hand: invoices and lines are retained
ERASURE = (
    "UPDATE Customer SET FirstName = 'erased', LastName = 'erased', Company = NULL, Address = 'erased', "
    "City = 'erased', State = 'erased', Country = 'erased', PostalCode = 'erased', Phone = NULL, "
    "Fax = NULL, Email = 'erased-1@invalid.example' WHERE CustomerId = 1",
)
PLANTED = {
    "the subject's name left in another of its columns": (
        "UPDATE Customer SET State = 'c/o Luís Gonçalves' WHERE CustomerId = 1",
        "(b) Customer row ('1',) column State",
    ),
    "e-mail copied into someone else's row": (
        "UPDATE Employee SET Title = 'luisg@embraer.com.br' WHERE EmployeeId = 2",
        "(b) Employee row ('2',) column Title",
    ),
    "row of another customer changed": (
        "UPDATE Customer SET City = 'Paris' WHERE CustomerId = 2",
        "(a) row of someone else Customer ('2',) changed in columns ['City']",
    ),
    "retained invoice changed outside its personal columns": (
        "UPDATE Invoice SET Total = 0 WHERE CustomerId = 1 AND InvoiceId = 98",
        "(d) kept row of the subject Invoice ('98',) changed in columns ['Total']",
    ),
    "retained invoice line deleted": (
        "DELETE FROM InvoiceLine WHERE InvoiceLineId = 531",
        "(d) kept row of the subject InvoiceLine ('531',) is gone",
    ),
    "dangling foreign key": (
        "UPDATE Invoice SET CustomerId = 999 WHERE InvoiceId = 1",
        "FOREIGN KEY violated",
    ),
    "row of another customer deleted": (
        "DELETE FROM Customer WHERE CustomerId = 20",
        "(a) row of someone else Customer ('20',) is gone",
    ),
    "a new row": (
        "INSERT INTO Genre (GenreId, Name) VALUES (99, 'new')",
        "(a) Genre: a new row",
    ),
}


@pytest.fixture
async def chinook(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    path = tmp_path / "chinook.db"
    load_sqlite(path, CHINOOK)
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    yield engine
    await engine.dispose()


async def _run(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as connection:
        for statement in statements:
            await connection.exec_driver_sql(statement)


async def test_a_correct_erasure_passes(chinook: AsyncEngine) -> None:
    before = await take_snapshot(chinook)
    await _run(chinook, *ERASURE)
    after = await take_snapshot(chinook)
    assert await erasure_findings(chinook, CHINOOK.manifest(), SUBJECT, before, after) == []


async def test_an_untouched_target_fails(chinook: AsyncEngine) -> None:
    before = await take_snapshot(chinook)
    findings = await erasure_findings(chinook, CHINOOK.manifest(), SUBJECT, before, before)
    assert any(f.startswith("(b) Customer row ('1',) column Email") for f in findings), findings


@pytest.mark.parametrize("defect", sorted(PLANTED))
async def test_a_planted_defect_fails(chinook: AsyncEngine, defect: str) -> None:
    statement, expected = PLANTED[defect]
    before = await take_snapshot(chinook)
    await _run(chinook, *ERASURE, statement)
    after = await take_snapshot(chinook)
    findings = await erasure_findings(chinook, CHINOOK.manifest(), SUBJECT, before, after)
    assert any(expected in f for f in findings), findings


async def test_the_database_verdict_is_read(tmp_path: Path) -> None:
    """SQLite's own checks (PRAGMA foreign_key_check) are part of the verdict."""
    path = tmp_path / "chinook.db"
    load_sqlite(path, CHINOOK)
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    event.listen(engine.sync_engine, "connect", lambda c, _: c.execute("PRAGMA foreign_keys=OFF"))
    try:
        before = await take_snapshot(engine)
        await _run(engine, *ERASURE, "DELETE FROM Artist WHERE ArtistId = (SELECT min(ArtistId) FROM Artist)")
        after = await take_snapshot(engine)
        findings = await erasure_findings(engine, CHINOOK.manifest(), SUBJECT, before, after)
    finally:
        await engine.dispose()
    assert any(f.startswith("PRAGMA foreign_key_check") for f in findings), findings
