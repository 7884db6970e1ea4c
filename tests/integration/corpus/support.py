"""The real-schema corpus: load a public sample database into a target, then export and erase its
subjects through the HTTP API and prove each erasure with the checker."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.manifest.loading import load_manifest_file
from app.manifest.model import Manifest
from tests.integration.erasure_checker import assert_erased, assert_export_counts, sql_counts, take_snapshot
from tests.integration.requests_support import drain

__all__ = ("FIXTURES", "Corpus", "Subject", "load_mysql", "load_postgres", "load_sqlite", "run_corpus")

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "corpus"
Headers = Callable[..., dict[str, str]]


@dataclass(frozen=True)
class Subject:
    """A subject of the corpus, found by ``identity`` (e.g. its e-mail)."""

    label: str
    identity: dict[str, str]


@dataclass(frozen=True)
class Corpus:
    """One sample database: its fixture directory, subjects and hand-written SQL.

    ``key_sql`` finds the subject key from the identity; ``footprint_sql`` counts the subject's
    rows per manifest table from the identity (``:email``), written by hand from the schema.
    """

    name: str
    key_sql: str
    footprint_sql: Mapping[str, str]
    subjects: tuple[Subject, ...]
    volatile: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    schemas: tuple[str | None, ...] = (None,)

    @property
    def directory(self) -> Path:
        """Where schema.sql, data.sql, manifest.yaml and the licence live."""
        return FIXTURES / self.name

    def manifest(self) -> Manifest:
        """The corpus's manifest, parsed."""
        return load_manifest_file(self.directory / "manifest.yaml")


def load_sqlite(path: Path, corpus: Corpus) -> None:
    """Create the corpus at ``path`` (a new SQLite file)."""
    database = sqlite3.connect(path)
    try:
        script = "".join(
            (corpus.directory / p).read_text(encoding="utf-8") for p in ("schema.sql", "data.sql")
        )
        database.executescript(f"BEGIN;\n{script}\nCOMMIT;")
    finally:
        database.close()


async def load_postgres(url: str, corpus: Corpus) -> None:
    """Create the corpus in the (empty) PostgreSQL database at ``url``."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        for part in ("schema.sql", "data.sql"):
            await connection.execute((corpus.directory / part).read_text(encoding="utf-8"))
    finally:
        await connection.close()


def _statements(script: str) -> Iterable[str]:
    """Split a MySQL script on its delimiter (``DELIMITER ;;`` blocks hold trigger bodies)."""
    delimiter = ";"
    buffer: list[str] = []
    for line in script.splitlines():
        if match := re.match(r"^\s*DELIMITER\s+(\S+)\s*$", line, re.IGNORECASE):
            delimiter = match.group(1)
            continue
        buffer.append(line)
        if line.rstrip().endswith(delimiter):
            statement = "\n".join(buffer).rstrip()[: -len(delimiter)].strip()
            buffer = []
            if statement and not all(s.strip().startswith("--") for s in statement.splitlines()):
                yield statement


async def load_mysql(engine: AsyncEngine, corpus: Corpus) -> None:
    """Create the corpus in the (empty) MariaDB database of ``engine``."""
    async with engine.begin() as connection:
        await connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        for part in ("schema.sql", "data.sql"):
            for statement in _statements((corpus.directory / part).read_text(encoding="utf-8")):
                await connection.exec_driver_sql(statement.replace("%", "%%"))
        await connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")


async def _request(client: AsyncTestClient[Litestar], auth: Headers, body: dict[str, Any]) -> str:
    response = await client.post("/v1/requests", json=body, headers=auth())
    assert response.status_code == 202, response.text
    return str(response.headers["location"])


async def _completed(client: AsyncTestClient[Litestar], auth: Headers, location: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(location, headers=auth())).json()
    assert body["status"] == "completed", body
    return body


async def _subject_key(engine: AsyncEngine, corpus: Corpus, subject: Subject) -> tuple[str, ...]:
    async with engine.connect() as connection:
        rows = (await connection.execute(text(corpus.key_sql), subject.identity)).all()
    assert len(rows) == 1, f"{subject.label}: the identity matches {len(rows)} rows"
    return tuple(str(v) for v in rows[0])


async def run_corpus(
    client: AsyncTestClient[Litestar],
    auth: Headers,
    settings: Settings,
    store_engine: AsyncEngine,
    target: AsyncEngine,
    corpus: Corpus,
) -> dict[str, dict[str, int]]:
    """Register the manifest, then per subject: export (counts = hand-written SQL), erase, check.

    Returns each subject's footprint counts (to show light and heavy subjects really differ).
    """
    manifest = corpus.manifest()
    document = (corpus.directory / "manifest.yaml").read_bytes()
    registered = await client.post(
        "/v1/manifests", content=document, headers={**auth(), "Content-Type": "application/yaml"}
    )
    assert registered.status_code in (200, 201), registered.text
    footprints: dict[str, dict[str, int]] = {}
    for subject in corpus.subjects:
        key = await _subject_key(target, corpus, subject)
        expected = await sql_counts(target, corpus.footprint_sql, **subject.identity)
        access = await _request(client, auth, {"kind": "access", "identities": subject.identity})
        await drain(settings, store_engine)
        await _completed(client, auth, access)
        exported = (await client.get(f"{access}/export?format=json", headers=auth())).json()
        assert_export_counts(exported, manifest.system, expected)

        before = await take_snapshot(target, corpus.schemas)
        erasure = await _request(client, auth, {"kind": "erasure", "identities": subject.identity})
        await drain(settings, store_engine)
        await _completed(client, auth, erasure)
        after = await take_snapshot(target, corpus.schemas)
        found = await assert_erased(target, manifest, key, before, after, volatile=corpus.volatile)
        counted = {name: found.count(before.table(name).key) for name in corpus.footprint_sql}
        assert counted == expected, f"{subject.label}: the checker's footprint differs from hand-written SQL"
        footprints[subject.label] = expected
    return footprints
