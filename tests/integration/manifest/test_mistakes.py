"""Planted mistakes: each manifest of tests/fixtures/mistakes is caught where it must be, naming
table, column and problem, on SQLite and PostgreSQL; those that reach a request erase nobody else."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings
from app.demo.shop import create_shop
from app.domain.manifests.services import check_live
from app.engine.erasure import ErasureOptions, execute_erasure
from app.engine.subjects import AmbiguousSubject, reflect_target, resolve_subject
from app.engine.targets import TargetRegistry
from app.lib.errors import LetheError, ManifestInvalid
from app.manifest.loading import load_manifest
from app.manifest.model import Manifest
from tests.integration.manifest.mistakes_support import (
    MISTAKES,
    Mistake,
    copy_shop,
    shop_rows,
    subject_rows,
)
from tests.servers import DatabaseServer

SHOP_VARIABLE = "LETHE_TARGET_SHOP_URL"
PEOPLE = 40
OPTIONS = ErasureOptions(secret="planted-mistakes-secret-planted-mistakes")


def _cases(stage: str) -> list[Mistake]:
    return [m for m in MISTAKES if m.caught == stage]


def test_the_suite_plants_every_class() -> None:
    stages = {m.caught for m in MISTAKES}
    assert stages == {"load", "validate", "strict", "request"}
    assert len(MISTAKES) >= 40
    assert all(m.names for m in MISTAKES if m.caught != "request")


@dataclass
class Shop:
    """The demo shop on one database kind, and how to make a fresh copy of it."""

    kind: str
    url: str
    sqlite_file: Path
    server: DatabaseServer | None

    async def copy(self, tmp_path: Path) -> str:
        """A copy of the target an erasure may change."""
        if self.server is None:
            copy = tmp_path / "copy.db"
            shutil.copy(self.sqlite_file, copy)
            return f"sqlite+aiosqlite:///{copy}"
        url = await self.server.create_database("lethe_mistakes")
        engine = create_async_engine(url)
        try:
            await copy_shop(self.sqlite_file, engine)
        finally:
            await engine.dispose()
        return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """The demo shop (a few dozen people, namesakes among them) as a target."""
    source = tmp_path_factory.mktemp("mistakes") / "shop.db"
    create_shop(source, people=PEOPLE)
    if request.param == "sqlite":
        return Shop("sqlite", f"sqlite+aiosqlite:///{source}", source, None)
    server: DatabaseServer = request.getfixturevalue("postgres_server")
    shop = Shop("postgresql", "", source, server)
    shop.url = await shop.copy(tmp_path_factory.mktemp("unused"))
    return shop


@pytest.fixture
async def targets(shop: Shop) -> AsyncIterator[TargetRegistry]:
    """The registry registration uses, pointed at the shop."""
    registry = TargetRegistry(Settings(), {SHOP_VARIABLE: shop.url})
    yield registry
    await registry.dispose()


@pytest.mark.parametrize("mistake", _cases("load"), ids=lambda m: m.name)
def test_refused_when_loaded(mistake: Mistake) -> None:
    with pytest.raises(ManifestInvalid) as caught:
        load_manifest(mistake.text)
    errors = caught.value.extra.get("errors") or [{"field": "", "message": caught.value.detail}]
    assert any(mistake.named_in(e["field"], e["message"]) for e in errors), errors


@pytest.mark.parametrize("mistake", _cases("validate"), ids=lambda m: m.name)
async def test_refused_by_validation_before_anything_runs(mistake: Mistake, targets: TargetRegistry) -> None:
    manifest = load_manifest(mistake.text)
    if mistake.name.endswith("unset-env-var"):  # the target cannot even be reached
        with pytest.raises(LetheError) as unreachable:
            await check_live(manifest, targets)
        assert mistake.named_in("", unreachable.value.detail), unreachable.value.detail
        return
    check = await check_live(manifest, targets)  # what registration and /validate run
    errors = check.of("error")
    assert errors, f"{mistake.name} was accepted"
    assert any(mistake.named_in(e.path, e.message) for e in errors), [(e.path, e.message) for e in errors]


@pytest.mark.parametrize("mistake", _cases("strict"), ids=lambda m: m.name)
async def test_refused_in_strict_mode_and_reported_otherwise(
    mistake: Mistake, targets: TargetRegistry
) -> None:
    manifest = load_manifest(mistake.text)
    relaxed = await check_live(manifest, targets)
    assert relaxed.of("error") == []
    notice = relaxed.notice()
    assert notice is not None
    assert "LETHE_MANIFEST_STRICT" in notice
    strict = await check_live(manifest, targets, strict_mode=True)
    errors = strict.of("error")
    assert any(mistake.named_in(e.path, e.message) for e in errors), [(e.path, e.message) for e in errors]


def _person(rows: dict[str, dict[object, tuple[str, ...]]]) -> int:
    """A person with orders, comments and sessions (the erasure has something to do everywhere)."""
    owners = [{int(r[1]) for r in rows[t].values()} for t in ("orders", "comments", "sessions")]
    return min(set.intersection(*owners))


async def _erase_and_compare(url: str, manifest: Manifest, identities: dict[str, str], user: int) -> None:
    engine: AsyncEngine = create_async_engine(url)
    try:
        before = await shop_rows(engine)
        outcome = await execute_erasure(engine, manifest, identities, OPTIONS)
        after = await shop_rows(engine)
    finally:
        await engine.dispose()
    assert outcome.found
    assert outcome.verified
    owned = subject_rows(before, user)
    for table, rows in before.items():
        for key, row in rows.items():
            if key not in owned[table]:
                assert after[table].get(key) == row, (table, key)  # nobody else's row changed
    assert after["users"][user][1] != before["users"][user][1]  # the e-mail is gone
    assert not owned["sessions"] & set(after["sessions"])


@pytest.mark.parametrize("mistake", _cases("request"), ids=lambda m: m.name)
async def test_accepted_manifests_erase_the_subject_and_nobody_else(
    mistake: Mistake, shop: Shop, targets: TargetRegistry, tmp_path: Path
) -> None:
    manifest = load_manifest(mistake.text)
    check = await check_live(manifest, targets)
    assert check.of("error") == [], [(e.path, e.message) for e in check.of("error")]
    url = await shop.copy(tmp_path)
    engine = create_async_engine(url)
    try:
        rows = await shop_rows(engine)
    finally:
        await engine.dispose()
    user = _person(rows)
    if "name" in manifest.subject.identities:  # an identity marked `ambiguous: refuse`
        await _ambiguous_request_fails(url, manifest, rows)
        names = [r[2] for r in rows["users"].values()]
        user = min(k for k, r in rows["users"].items() if names.count(r[2]) == 1 and k in _owners(rows))
        await _erase_and_compare(url, manifest, {"name": rows["users"][user][2]}, user)
        return
    await _erase_and_compare(url, manifest, {"email": rows["users"][user][1]}, user)


def _owners(rows: dict[str, dict[object, tuple[str, ...]]]) -> set[int]:
    return {int(r[1]) for r in rows["sessions"].values()}


async def _ambiguous_request_fails(
    url: str, manifest: Manifest, rows: dict[str, dict[object, tuple[str, ...]]]
) -> None:
    names = [r[2] for r in rows["users"].values()]
    shared = next(n for n in names if names.count(n) > 1)
    engine = create_async_engine(url)
    try:
        with pytest.raises(AmbiguousSubject, match="several subjects"):
            await execute_erasure(engine, manifest, {"name": shared}, OPTIONS)
        assert await shop_rows(engine) == rows  # nothing was changed
        async with engine.connect() as connection:  # nor exported or rectified (one resolver)
            target = await reflect_target(connection, manifest)
            with pytest.raises(AmbiguousSubject, match="several subjects"):
                await resolve_subject(connection, manifest, target.tables["users"], {"name": shared})
        async with engine.connect() as connection:
            count = (await connection.execute(select(text("count(*)")).select_from(text("users")))).scalar()
        assert count == PEOPLE
    finally:
        await engine.dispose()
