"""Waking workers when a request is queued, instead of waiting for their next poll.

A transition to ``queued`` marks its store session; when that transaction commits, the workers of
this process are woken at once, and on PostgreSQL a ``NOTIFY`` sent in the same transaction (so it
is delivered only if the request really was queued) wakes the workers of every other replica,
which ``LISTEN`` on a connection of their own. Polling stays as the fallback: a lost notification
(a dropped listener connection) delays a request by at most one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.engine.dialects import dialect_of
from app.lib.logging import get_logger
from app.lib.signals import CommitSignal

__all__ = ("CHANNEL", "listen_for_work", "queued_in", "wait_for_work")

CHANNEL = "lethe_requests"
"""The PostgreSQL notification channel of queued requests."""

_WAKE = CommitSignal("workers")
_NOTIFY = text("SELECT pg_notify(:channel, '')")
_RECONNECT_SECONDS = 5.0

logger = get_logger("lethe.workers")


async def queued_in(session: AsyncSession) -> None:
    """Wake workers once ``session``'s transaction commits (it queued a request)."""
    _WAKE.mark(session)
    if session.bind is not None and dialect_of(session.bind).listens:
        await session.execute(_NOTIFY, {"channel": CHANNEL})


async def wait_for_work(stop: asyncio.Event, poll_seconds: float) -> None:
    """Return when work may be waiting: a wake-up, ``stop``, or ``poll_seconds`` (the poll)."""
    signal = _WAKE.event()
    waiters = [asyncio.ensure_future(signal.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=poll_seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    signal.clear()


async def listen_for_work(store_engine: AsyncEngine, stop: asyncio.Event) -> None:
    """On PostgreSQL, ``LISTEN`` for queued requests of any replica until ``stop``; reconnects.

    Other stores have no other replica to hear from: it just waits for ``stop`` (a loop of
    :class:`app.lib.loops.LoopWatch` that ends early counts as dead).
    """
    if not dialect_of(store_engine).listens:
        await stop.wait()
        return
    while not stop.is_set():
        try:
            async with store_engine.connect() as connection:
                raw: Any = (await connection.get_raw_connection()).driver_connection

                def callback(*_: object) -> None:
                    _WAKE.set()

                await raw.add_listener(CHANNEL, callback)
                try:
                    while not stop.is_set() and not raw.is_closed():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), timeout=_RECONNECT_SECONDS)
                finally:
                    if not raw.is_closed():
                        await raw.remove_listener(CHANNEL, callback)
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("work listener lost its connection", error_type=type(exc).__name__)
        if not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=_RECONNECT_SECONDS)
