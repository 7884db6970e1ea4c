"""The demo person of ``make demo`` can be previewed and erased with the demo manifest."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.demo import DEMO_MANIFEST, DEMO_PERSON
from app.demo.shop import create_shop
from app.engine.erasure import ErasureOptions, execute_erasure, plan_erasure
from app.manifest.loading import load_manifest_file


async def test_demo_person_erasure(tmp_path: Path) -> None:
    create_shop(tmp_path / "shop.db")
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}")
    event.listen(engine.sync_engine, "connect", lambda c, _: c.execute("PRAGMA foreign_keys=ON"))
    manifest = load_manifest_file(DEMO_MANIFEST)
    options = ErasureOptions(secret="demo-test-secret-demo-test-secret")
    try:
        async with engine.connect() as conn:
            plan = await plan_erasure(conn, manifest, {"email": DEMO_PERSON}, options)
        assert plan.found
        assert plan.blocked is None
        assert plan.rows > 0
        async with engine.connect() as conn:
            sessions = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM sessions JOIN users ON users.id = sessions.user_id"
                        " WHERE email = :e"
                    ),
                    {"e": DEMO_PERSON},
                )
            ).scalar_one()
        assert sessions > 0
        outcome = await execute_erasure(engine, manifest, {"email": DEMO_PERSON}, options)
        assert outcome.verified
        assert outcome.deleted["sessions"] == sessions
        again = await execute_erasure(engine, manifest, {"email": DEMO_PERSON}, options)
        assert not again.found
    finally:
        await engine.dispose()
