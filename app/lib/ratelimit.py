"""Per-client rate limits per scope, counted in the service store so every replica shares them."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from sqlalchemy import bindparam, delete
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.models import RateLimitWindow
from app.db.store import retry_once_if_dropped
from app.engine.dialects import dialect_of
from app.lib.errors import ConfigurationError, TooManyRequests

__all__ = ("Limit", "RateLimiter", "parse_limits")


@dataclass(frozen=True)
class Limit:
    """At most ``calls`` per ``seconds`` for one client under one scope."""

    calls: int
    seconds: int


def parse_limits(text: str) -> dict[str, Limit]:
    """``requests:write=60/60 consent:write=600/60`` -> {scope: Limit}.

    Raises:
        ConfigurationError: an entry is not ``<scope>=<calls>/<seconds>`` with positive numbers.
    """
    limits: dict[str, Limit] = {}
    for entry in text.replace(",", " ").split():
        scope, _, rate = entry.partition("=")
        calls, _, seconds = rate.partition("/")
        if not (scope and calls.isdigit() and seconds.isdigit() and int(calls) > 0 and int(seconds) > 0):
            raise ConfigurationError(f"LETHE_RATE_LIMITS: '{entry}' is not <scope>=<calls>/<seconds>")
        limits[scope] = Limit(int(calls), int(seconds))
    return limits


class RateLimiter:
    """Fixed windows per (client, scope): one atomic upsert per call, 429 past the limit."""

    def __init__(self, engine: AsyncEngine, limits: dict[str, Limit]) -> None:
        self._engine = engine
        self._limits = limits
        # built once: their SQL is compiled once per process (one call per limited request)
        upsert = dialect_of(engine).insert(RateLimitWindow)
        self._count = upsert.on_conflict_do_update(
            index_elements=["client_id", "scope", "window_start"],
            set_={"calls": RateLimitWindow.calls + 1},
        ).returning(RateLimitWindow.calls)
        self._forget = delete(RateLimitWindow).where(
            RateLimitWindow.client_id == bindparam("w_client"),
            RateLimitWindow.scope == bindparam("w_scope"),
            RateLimitWindow.window_start < bindparam("w_start"),
        )

    async def hit(self, client_id: str, scope: str) -> None:
        """Count one call of ``client_id`` under ``scope``.

        Raises:
            TooManyRequests: the window is full; ``Retry-After`` says when the next one opens.
        """
        limit = self._limits.get(scope)
        if limit is None:
            return
        now = time.time()
        start = int(now // limit.seconds * limit.seconds)
        window = {"client_id": client_id, "scope": scope, "window_start": start, "calls": 1}

        async def count() -> int:
            # each statement atomic on its own: autocommit spares the BEGIN and COMMIT round trips
            async with self._engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                calls = (await connection.execute(self._count, window)).scalar_one()
                if calls == 1:  # first call of a window: forget this client's older windows
                    await connection.execute(
                        self._forget, {"w_client": client_id, "w_scope": scope, "w_start": start}
                    )
            return int(calls)

        # a pooled connection the server dropped costs a retry, not a 500 (at worst a call
        # counted twice, when the drop hit the COMMIT)
        calls = await retry_once_if_dropped(count)
        if calls > limit.calls:
            retry = max(1, math.ceil(start + limit.seconds - now))
            raise TooManyRequests(
                f"more than {limit.calls} calls under {scope} in {limit.seconds} s; retry in {retry} s",
                extra={"scope": scope, "limit": limit.calls, "window_seconds": limit.seconds},
                headers={"Retry-After": str(retry)},
            )
