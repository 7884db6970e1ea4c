"""The background runner: ticks survive failures, shutdown is graceful within the grace, deaths show."""

from __future__ import annotations

import asyncio
import time

from app.lib.loops import LOOP_DEATHS, LoopWatch


async def test_a_failing_tick_does_not_end_the_loop_and_shutdown_ends_it_at_once() -> None:
    loops = LoopWatch(grace_seconds=30)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        ticks += 1
        if ticks % 2:
            raise RuntimeError("boom")

    loops.every("flaky", 0.01, tick)
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await loops.stop()

    assert ticks >= 3, "ticks went on after failures"
    assert time.monotonic() - started < 1, "an idle periodic loop stops without waiting for the grace"
    assert loops.dead() == {}


async def test_graceful_work_finishes_what_it_holds_and_eager_loops_are_cancelled() -> None:
    loops = LoopWatch(grace_seconds=5)
    finished: list[str] = []
    cancelled: list[str] = []

    async def worker() -> None:
        while not loops.stopping.is_set():
            await asyncio.sleep(0.2)  # one unit of work, not interruptible by shutdown
            finished.append("unit")

    async def sleeper() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append("sleeper")
            raise

    loops.start("worker", worker, graceful=True)
    loops.start("sleeper", sleeper)
    await asyncio.sleep(0.05)
    await loops.stop()

    assert finished == ["unit"], "the unit under way at shutdown was finished, then the loop returned"
    assert cancelled == ["sleeper"]
    assert loops.dead() == {}, "returning because of shutdown is not a death"


async def test_work_that_overstays_the_grace_is_cancelled() -> None:
    loops = LoopWatch(grace_seconds=0.1)

    async def stubborn() -> None:
        await asyncio.sleep(60)

    loops.start("stubborn", stubborn, graceful=True)
    started = time.monotonic()
    await loops.stop()
    assert time.monotonic() - started < 2


async def test_a_loop_that_ends_before_shutdown_is_dead_and_counted() -> None:
    loops = LoopWatch()
    before = LOOP_DEATHS.labels(loop="quitter")._value.get()

    async def quitter() -> None:
        return

    loops.start("quitter", quitter)
    await asyncio.sleep(0.01)
    assert loops.dead() == {"quitter": "returned"}
    assert LOOP_DEATHS.labels(loop="quitter")._value.get() == before + 1
    await loops.stop()


async def test_the_runner_can_start_again_after_a_stop() -> None:
    loops = LoopWatch()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        ticks += 1

    loops.every("first", 60, tick)
    await asyncio.sleep(0.01)
    await loops.stop()
    loops.every("second", 60, tick)
    await asyncio.sleep(0.01)
    await loops.stop()
    assert ticks == 2, "the second start-up ran its first tick"
