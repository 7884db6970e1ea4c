"""``lethe audit verify``, ``checkpoint`` and ``sequence`` as an operator runs them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cli import lethe_group
from app.config import get_settings
from app.db.audit import AuditEvent
from app.db.store import create_store_engine
from app.domain.audit.services import append
from app.lib.crypto import generate_signing_key_pem
from tests.conftest import TEST_AUDIT_KEY, TEST_CHAIN_KEY, TEST_JWT_SECRET, make_settings
from tests.integration.audit_support import append_events, as_owner


def _run(store_url: str, args: list[str], signing_key: str | None) -> Result:
    env = {
        "LETHE_DATABASE_URL": store_url,
        "LETHE_JWT_SECRET": TEST_JWT_SECRET,
        "LETHE_AUDIT_KEY": TEST_AUDIT_KEY,
        "LETHE_AUDIT_CHAIN_KEY": TEST_CHAIN_KEY,
        "LETHE_LOG_LEVEL": "WARNING",
        "LETHE_AUDIT_SIGNING_KEY": signing_key,
    }
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(lethe_group, args, env=env, catch_exceptions=False)
    finally:
        get_settings.cache_clear()


async def _lethe(store_url: str, *args: str, signing_key: str | None = None) -> Result:
    """Run the command as the console script would (in a thread: it starts its own event loop)."""
    return await asyncio.to_thread(_run, store_url, list(args), signing_key)


async def test_cli_checkpoint_and_verify(store_url: str, tmp_path: Path) -> None:
    key = generate_signing_key_pem()
    engine = create_store_engine(make_settings(tmp_path, database_url=store_url))
    try:
        await append_events(engine, 5)
        taken = await _lethe(store_url, "audit", "checkpoint", signing_key=key)
        assert taken.exit_code == 0, taken.output
        checkpoint = json.loads(taken.output)
        assert checkpoint["seq"] == 5
        path = tmp_path / "checkpoint.json"
        path.write_text(taken.output)

        ok = await _lethe(store_url, "audit", "verify", "--checkpoint", str(path), signing_key=key)
        assert ok.exit_code == 0, ok.output
        assert "ok" in ok.output

        await as_owner(engine, "audit_event", "DELETE FROM audit_event WHERE seq = 5")
        cut = await _lethe(store_url, "audit", "verify", "--checkpoint", str(path), signing_key=key)
        assert cut.exit_code == 1
        assert "seq 5" in cut.output
        assert "truncated" in cut.output

        await as_owner(engine, "audit_event", "UPDATE audit_event SET actor = 'x' WHERE seq = 3")
        broken = await _lethe(store_url, "audit", "verify")
        assert broken.exit_code == 1
        assert "seq 3" in broken.output

        missing = await _lethe(store_url, "audit", "checkpoint")
        assert missing.exit_code != 0
        assert "LETHE_AUDIT_SIGNING_KEY" in missing.output
    finally:
        await engine.dispose()


async def test_cli_links_pending_events(store_url: str, tmp_path: Path) -> None:
    engine = create_store_engine(make_settings(tmp_path, database_url=store_url))
    try:
        for index in range(3):
            async with AsyncSession(engine) as session:
                await append(session, action="test.event", actor="op", payload={"index": index})
                await session.commit()
        linked = await _lethe(store_url, "audit", "sequence")
        assert linked.exit_code == 0, linked.output
        assert "pending after linking: 0" in linked.output
        async with engine.connect() as connection:
            seqs = (await connection.execute(select(AuditEvent.seq).order_by(AuditEvent.seq))).scalars().all()
        assert seqs == [1, 2, 3]
        verified = await _lethe(store_url, "audit", "verify")
        assert "3 events, head seq 3" in verified.output
    finally:
        await engine.dispose()
