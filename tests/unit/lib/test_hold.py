"""The heartbeat of a lease holder: a lost lease stops the work and says so."""

from __future__ import annotations

import asyncio

import pytest

from app.lib.leases import LeaseLost, hold


async def test_work_runs_to_its_result_while_the_lease_is_renewed() -> None:
    beats = 0

    async def renew() -> None:
        nonlocal beats
        beats += 1

    async def work() -> str:
        await asyncio.sleep(0.1)
        return "done"

    assert await hold(work(), renew, every=0.02) == "done"
    assert beats >= 2


async def test_a_lost_lease_cancels_the_work_and_raises_lease_lost() -> None:
    stopped: list[str] = []

    async def renew() -> None:
        raise LeaseLost("taken over")

    async def work() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.append("cancelled")
            raise
        return "never"

    with pytest.raises(LeaseLost):
        await asyncio.wait_for(hold(work(), renew, every=0.02), timeout=5)
    assert stopped == ["cancelled"]


async def test_an_unreachable_store_for_one_beat_is_not_a_lost_lease() -> None:
    beats = 0

    async def renew() -> None:
        nonlocal beats
        beats += 1
        if beats == 1:
            raise OSError("connection refused")

    async def work() -> str:
        await asyncio.sleep(0.1)
        return "done"

    assert await hold(work(), renew, every=0.02) == "done"
    assert beats >= 2
