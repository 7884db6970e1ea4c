"""Independent verification: an erasure that followed a wrong path is caught and rolled back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.engine.erasure import ErasureBlocked, ErasureOptions, execute_erasure
from tests.integration.erasure import schema
from tests.integration.erasure.conftest import seeded_shop

OPTIONS = ErasureOptions(secret="erasure-test-secret-erasure-test-secret")
BATCHED = ErasureOptions(secret=OPTIONS.secret, batch_threshold=0, batch_size=1)
WRONG = {"logical": True, "reason": "the comment id is the user id (it is not)"}


@pytest.fixture
async def shop(target_url: str, tmp_path: Any) -> AsyncIterator[AsyncEngine]:
    """The seeded erasure target on each dialect."""
    async with seeded_shop(target_url, tmp_path, 12) as engine:
        yield engine


@pytest.mark.parametrize("options", [OPTIONS, BATCHED], ids=["one-transaction", "batched"])
async def test_a_wrong_link_in_a_deleted_table_is_caught_and_rolled_back(
    shop: AsyncEngine, options: ErasureOptions
) -> None:
    # comments reached from their own id instead of user_id (an FK exists): erasing person 1
    # would delete comment 1's namesake rows of nobody and leave person 1's comments behind
    wrong = schema.manifest(comments={"link": {"path": [{"from": "id", "to": "users", **WRONG}]}})
    before = await schema.snapshot(shop)
    with pytest.raises(ErasureBlocked) as caught:
        await execute_erasure(shop, wrong, {"user_id": "1"}, options)
    message = caught.value.detail
    assert "comments 2" in message
    assert "independently of the paths" in message
    assert "person1" not in message
    after = await schema.snapshot(shop)
    if options is OPTIONS:
        assert after == before  # one transaction: nothing changed
    else:  # steps before the failing one committed; the failing step rolled back
        assert {k for k, r in after["comments"].items() if r[1] == 1} == {(10,), (11,)}


async def test_a_wrong_link_of_a_retained_table_is_caught(shop: AsyncEngine) -> None:
    # orders reached from their id: person 10's delivery notes would be erased instead of person 1's
    wrong = schema.manifest(orders={"link": {"path": [{"from": "id", "to": "users", **WRONG}]}})
    before = await schema.snapshot(shop)
    with pytest.raises(ErasureBlocked) as caught:
        await execute_erasure(shop, wrong, {"user_id": "1"}, OPTIONS)
    assert "orders 2" in caught.value.detail
    assert await schema.snapshot(shop) == before


async def test_the_right_links_pass_the_independent_check(shop: AsyncEngine) -> None:
    outcome = await execute_erasure(shop, schema.manifest(), {"user_id": "1"}, OPTIONS)
    assert outcome.verified
    assert set(outcome.independent_left) >= {"comments", "orders", "messages", "users"}
    assert not any(outcome.independent_left.values())
