"""In-process wake-ups tied to a commit: a store session is marked, and when its transaction
commits (never when it rolls back) whoever waits in this process is woken at once.

Used by the request workers (a request was queued) and the audit sequencer (an event was queued);
each keeps polling as the fallback for other replicas' work.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

__all__ = ("CommitSignal",)


class CommitSignal:
    """One named wake-up: :meth:`mark` a session, :meth:`event` to wait on, :meth:`set` to wake."""

    def __init__(self, name: str) -> None:
        self._key = f"lethe.wake.{name}"
        self._events: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        event.listen(Session, "after_commit", self._after_commit)
        event.listen(Session, "after_rollback", self._after_rollback)

    def mark(self, session: Any) -> None:
        """Wake the waiters once ``session`` (sync or async) commits."""
        session.info[self._key] = True

    def event(self) -> asyncio.Event:
        """This event loop's event (one per loop: tests run several apps in one process)."""
        loop = asyncio.get_running_loop()
        signal = self._events.get(loop)
        if signal is None:
            signal = self._events[loop] = asyncio.Event()
            for other in [key for key in self._events if key.is_closed()]:
                del self._events[other]
        return signal

    def set(self) -> None:
        """Wake the waiters of the running loop now (no running loop: nobody to wake here)."""
        with contextlib.suppress(RuntimeError):
            self.event().set()

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(self._key, False):
            self.set()

    def _after_rollback(self, session: Session) -> None:
        session.info.pop(self._key, None)
