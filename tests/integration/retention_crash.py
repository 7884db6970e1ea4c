"""Run one retention policy in this process and die abruptly right after batch N is recorded.

``python -m tests.integration.retention_crash STORE_URL POLICY_ID N`` (the target's URL comes from
the environment, like in production). Exit status 17 means it died where it was told to.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path

from app.db.store import create_store_engine
from app.domain.retention.jobs import RetentionRunner
from app.engine.retention import BatchReport
from app.engine.targets import TargetRegistry
from tests.conftest import make_settings

__all__ = ("main",)

CRASH_STATUS = 17


async def main(store_url: str, policy_id: str, batches: int) -> None:
    """Run the policy; ``os._exit`` after the N-th batch (no cleanup, no lease release)."""
    settings = make_settings(Path(tempfile.gettempdir()), database_url=store_url, retention_lease_seconds="1")
    runner = RetentionRunner(
        create_store_engine(settings), TargetRegistry(settings), settings, owner="doomed"
    )
    seen = 0

    async def crash(report: BatchReport) -> None:
        nonlocal seen
        del report
        seen += 1
        if seen == batches:
            os._exit(CRASH_STATUS)

    await runner.run(uuid.UUID(policy_id), actor="test-operator", trigger="api", observer=crash)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
