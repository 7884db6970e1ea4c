"""A report racing the worker that finishes the request's database systems, on the SQLite
store: whichever settles last, the request ends completed, never stuck in ``awaiting_systems``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.config import Settings
from app.domain.external import reports
from app.domain.external.schemas import TaskCompleteIn
from app.domain.requests.jobs import RequestWorker
from app.domain.requests.queries import load_request
from app.engine.targets import TargetRegistry
from app.lib.auth import Principal
from tests.integration import test_external_tasks as external_tasks
from tests.integration.requests_support import SUBJECT_EMAIL, drain, register_crm
from tests.integration.test_external_tasks import mailer, register
from tests.integration.webhooks_support import CLIENT_SCOPES

Headers = Callable[..., dict[str, str]]
settings = external_tasks.settings
crm = external_tasks.crm


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("kind", ["erasure", "access"])
async def test_a_report_that_read_the_request_before_the_worker_settled_still_finishes_it(
    client: AsyncTestClient[Litestar], auth: Headers, settings: Settings, store_engine: AsyncEngine, kind: str
) -> None:
    shop = auth(*CLIENT_SCOPES, sub="shop", client_id="shop")
    await register_crm(client, auth())
    await register(client, mailer(), auth())
    answer = await client.post(
        "/v1/requests", json={"kind": kind, "identities": {"email": SUBJECT_EMAIL}}, headers=shop
    )
    request_id = uuid.UUID(answer.json()["id"])
    targets = TargetRegistry(settings)
    worker = RequestWorker(settings, store_engine, targets, "race")
    principal = Principal(sub="shop", client_id="shop", scopes=frozenset(CLIENT_SCOPES))
    try:
        claim = await worker.claim()
        assert claim is not None
        async with async_sessionmaker(store_engine, expire_on_commit=False)() as session:
            async with session.begin():
                assert (await load_request(session, request_id, lock=True)).status == "running"
                working = asyncio.create_task(worker.process(claim))  # finishes while the report runs
                for _ in range(100):
                    if working.done():
                        break
                    await asyncio.sleep(0.05)
                assert working.done(), "the worker waited for the report's read"
                await reports.complete_task(
                    session, settings, request_id, "mailer", TaskCompleteIn(), principal
                )
            await working
    finally:
        await targets.dispose()
    await drain(settings, store_engine)  # an access export is assembled after the last report
    view = (await client.get(f"/v1/requests/{request_id}", headers=shop)).json()
    assert view["status"] == "completed"
