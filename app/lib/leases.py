"""Leases with fencing on rows of the service store: who may work on a row, and for how long.

One lease scheme serves every kind of background work that several replicas may try at once
(request workers, retention runs; the webhook delivery worker and the audit sequencer next). A
row that can be leased keeps, in columns of its own, the lease *owner*, when the lease
*expires*, and optionally a *token* (a counter raised by every acquisition, e.g. a request's
``attempt``) and a *heartbeat* time. :class:`LeaseTable` names those columns once; then:

- :meth:`LeaseTable.acquire` is one conditional ``UPDATE``: it takes the row only while it is
  available (by default: no lease, or an expired one) and raises the token, so exactly one of
  several concurrent callers wins (PostgreSQL, MariaDB and SQLite alike).
  :meth:`LeaseTable.claim_next` first picks the oldest available row (``FOR UPDATE SKIP LOCKED``
  on PostgreSQL, so replicas never wait on each other), then acquires it;
  :meth:`LeaseTable.claim_batch` does so for several rows with one SELECT and one UPDATE (each
  row taken only if still available and its token unchanged, ``RETURNING`` the ones taken: a
  store that has ``UPDATE ... RETURNING``, as PostgreSQL and SQLite do).
- :meth:`LeaseTable.renew` extends the lease *and fences*: it matches the row only while the
  caller's token (or owner, for a table without token) is still the current one. Call it at the
  start of every write the holder makes, in the same transaction: once another replica has taken
  over an expired lease, it raises :class:`LeaseLost`, the transaction rolls back, and the stale
  holder must stop without touching anything else.
- :meth:`LeaseTable.release` gives the lease back early (a finished run).
- :func:`hold` runs a piece of work while a heartbeat renews the lease every third of its
  length; a lost lease cancels the work and surfaces as :class:`LeaseLost`.

A delivery worker, for instance, declares its outbox row's columns once::

    OUTBOX_LEASE = LeaseTable(
        key=OutboxEvent.id, owner=OutboxEvent.lease_owner, expires_at=OutboxEvent.lease_expires_at,
        token=OutboxEvent.attempt,
    )
    async with sessions.begin() as session:  # one transaction: the claim commits alone
        holder = await OUTBOX_LEASE.claim_next(
            session, owner=owner_id("deliver-0"), seconds=30,
            ready=(OutboxEvent.next_attempt_at <= now) & OUTBOX_LEASE.free(now),
            order_by=(OutboxEvent.created_at, OutboxEvent.id),
        )
    # send, then record the outcome fenced by the claim, in one transaction:
    async with sessions.begin() as session:
        await OUTBOX_LEASE.renew(session, holder, seconds=30)  # LeaseLost: another worker has it
        ...  # write the attempt's outcome
    # a long send runs under ``await hold(send(), renew_in_own_transaction, every=10)``

A singleton such as the audit sequencer leases one well-known row of its own table
(``acquire(session, "sequencer", owner=..., seconds=...)``; ``None`` means another replica holds
it: try again after a while), renews it before every batch it commits, in the batch's
transaction, and ``release``s it on shutdown so a successor need not wait for the expiry.

Times come from :func:`app.lib.clock.utcnow`. How long a lease lasts is the holder's setting and
is stored in the row, so any process (a CronJob with other settings included) judges expiry by
the row alone, never by its own setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, or_, select, tuple_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from app.lib.clock import utcnow
from app.lib.logging import get_logger

__all__ = ("Holder", "LeaseLost", "LeaseTable", "hold", "owner_id")

logger = get_logger("lethe.leases")

T = TypeVar("T")


class LeaseLost(Exception):
    """Another process holds the lease now (this one stalled past it): stop, write nothing more."""


def owner_id(name: str) -> str:
    """A lease owner naming this process: ``host:pid:name`` (at most 128 characters)."""
    return f"{socket.gethostname()}:{os.getpid()}:{name}"[:128]


@dataclass(frozen=True)
class Holder:
    """A lease this process holds: on which row, as whom, at which token (``None``: no token column)."""

    key: Any
    owner: str
    token: int | None = None
    expires_at: datetime | None = None
    row: tuple[Any, ...] = ()
    """:meth:`LeaseTable.claim_next` only: the ``columns`` it read from the row before taking it."""


@dataclass(frozen=True, kw_only=True)
class LeaseTable:
    """Where one table keeps its leases (ORM attributes of its model).

    Attributes:
        key: the primary key column.
        owner: who holds the lease (``NULL`` when free).
        expires_at: when the lease runs out (``NULL`` when free).
        token: optional fencing counter, raised by every acquisition (e.g. ``attempt``).
        heartbeat_at: optional time of the last acquisition or renewal.
    """

    key: Any
    owner: Any
    expires_at: Any
    token: Any = None
    heartbeat_at: Any = None

    @property
    def _model(self) -> Any:
        return self.key.class_

    def free(self, now: datetime) -> ColumnElement[bool]:
        """No lease, or an expired one: the default condition of :meth:`acquire`."""
        return or_(self.expires_at.is_(None), self.expires_at < now)

    def expired(self, now: datetime) -> ColumnElement[bool]:
        """A lease was taken and has run out (its holder died or stalled)."""
        condition: ColumnElement[bool] = self.expires_at < now
        return condition

    def _lease_values(self, now: datetime, seconds: float) -> dict[str, Any]:
        values: dict[str, Any] = {self.expires_at.key: now + timedelta(seconds=seconds)}
        if self.heartbeat_at is not None:
            values[self.heartbeat_at.key] = now
        return values

    async def acquire(
        self,
        session: AsyncSession,
        key: Any,
        *,
        owner: str,
        seconds: float,
        available: ColumnElement[bool] | None = None,
        token: int | None = None,
        where: Sequence[ColumnElement[bool]] = (),
        values: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Holder | None:
        """Take the lease of row ``key`` if it is ``available`` (default :meth:`free`); else ``None``.

        Args:
            token: the token read with the row: the update then also requires it unchanged
                (compare-and-set) and sets ``token + 1``; ``None`` with a token column raises it
                in SQL instead.
            where: further conditions (e.g. the row's window or status).
            values: further columns to set in the same statement (e.g. ``status='running'``).
        """
        now = now or utcnow()
        statement = update(self._model).where(
            self.key == key, available if available is not None else self.free(now), *where
        )
        changes = {self.owner.key: owner} | self._lease_values(now, seconds) | dict(values or {})
        if self.token is not None:
            if token is not None:
                statement = statement.where(self.token == token)
                changes[self.token.key] = token + 1
            else:
                changes[self.token.key] = self.token + 1
        result = await session.execute(statement.values(changes).execution_options(synchronize_session=False))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        new_token: int | None = None
        if self.token is not None:
            new_token = (
                token + 1
                if token is not None
                else await session.scalar(select(self.token).where(self.key == key))
            )
        return Holder(key=key, owner=owner, token=new_token, expires_at=changes[self.expires_at.key])

    async def claim_next(
        self,
        session: AsyncSession,
        *,
        owner: str,
        seconds: float,
        ready: ColumnElement[bool],
        order_by: Sequence[Any],
        columns: Sequence[Any] = (),
        values: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Holder | None:
        """Acquire the first row (by ``order_by``) that is ``ready``; ``None`` when there is none.

        ``columns`` are read with the row before it is taken (e.g. its status) into
        :attr:`Holder.row`; ``values`` are set together with the lease.

        ``ready`` replaces :meth:`free` as the availability condition, so it must include it
        (e.g. ``queued OR (running AND expired)``). PostgreSQL skips rows another transaction has
        locked; elsewhere the conditional update alone decides, and a lost race returns ``None``
        (look again at the next poll).
        """
        holders = await self.claim_batch(
            session,
            owner=owner,
            seconds=seconds,
            ready=ready,
            order_by=order_by,
            limit=1,
            columns=columns,
            values=values,
            now=now,
        )
        return holders[0] if holders else None

    async def claim_batch(
        self,
        session: AsyncSession,
        *,
        owner: str,
        seconds: float,
        ready: ColumnElement[bool],
        order_by: Sequence[Any],
        limit: int,
        columns: Sequence[Any] = (),
        values: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> list[Holder]:
        """:meth:`claim_next` for up to ``limit`` rows in one transaction; each holder has its own
        token. Rows another transaction took meanwhile are left out."""
        now = now or utcnow()
        keys = [self.key] if self.token is None else [self.key, self.token]
        statement = (
            select(*keys, *columns)
            .where(ready)
            .order_by(*order_by)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )  # SQLite renders no FOR UPDATE: there the conditional update alone decides
        rows = (await session.execute(statement)).all()
        if not rows:
            return []
        # One UPDATE takes them all, each only if still ready (and, with tokens, unchanged since
        # read: compare-and-set per row); RETURNING says which were taken, with their new tokens.
        changes = {self.owner.key: owner} | self._lease_values(now, seconds) | dict(values or {})
        if self.token is not None:
            read = tuple_(self.key, self.token).in_([(row[0], row[1]) for row in rows])
            changes[self.token.key] = self.token + 1
            returned = [self.key, self.token]
        else:
            read = self.key.in_([row[0] for row in rows])
            returned = [self.key, self.key]
        result = await session.execute(
            update(self._model)
            .where(read, ready)
            .values(changes)
            .returning(*returned)
            .execution_options(synchronize_session=False)
        )
        taken: dict[Any, Any] = dict(result.tuples().all())
        expires_at = changes[self.expires_at.key]
        return [
            Holder(
                key=row[0],
                owner=owner,
                token=taken[row[0]] if self.token is not None else None,
                expires_at=expires_at,
                row=tuple(row[len(keys) :]),
            )
            for row in rows
            if row[0] in taken
        ]

    async def renew(
        self,
        session: AsyncSession,
        holder: Holder,
        *,
        seconds: float,
        where: Sequence[ColumnElement[bool]] = (),
        now: datetime | None = None,
    ) -> datetime:
        """Extend ``holder``'s lease if it still holds the row (the fence); returns ``now``.

        Raises:
            LeaseLost: another process acquired the row since (or ``where`` no longer holds).
        """
        now = now or utcnow()
        result = await session.execute(
            update(self._model)
            .where(self.key == holder.key, self._held_by(holder), *where)
            .values(self._lease_values(now, seconds))
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(f"lease on {holder.key} (token {holder.token}) was taken over")
        return now

    async def release(self, session: AsyncSession, holder: Holder) -> bool:
        """Give the lease back if ``holder`` still has it; False when it was already taken over."""
        result = await session.execute(
            update(self._model)
            .where(self.key == holder.key, self._held_by(holder))
            .values({self.owner.key: None, self.expires_at.key: None})
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def _held_by(self, holder: Holder) -> ColumnElement[bool]:
        if self.token is not None and holder.token is not None:
            by_token: ColumnElement[bool] = self.token == holder.token
            return by_token
        by_owner: ColumnElement[bool] = self.owner == holder.owner
        return by_owner


async def hold(
    work: Coroutine[Any, Any, T],
    renew: Callable[[], Awaitable[object]],
    *,
    every: float,
    lost: Callable[[], bool] | None = None,
) -> T:
    """Run ``work`` while ``renew()`` is called every ``every`` seconds (the heartbeat).

    When ``renew`` raises :class:`LeaseLost`, ``work`` is cancelled and :class:`LeaseLost` is
    raised here instead; a store that cannot be reached for a beat is logged and retried at the
    next one (the lease may still hold). ``lost`` reports a loss seen elsewhere (e.g. by a fenced
    write), so a cancellation it explains also surfaces as :class:`LeaseLost`.
    """
    main = asyncio.current_task()
    beat_lost = False

    async def beat() -> None:
        nonlocal beat_lost
        while True:
            await asyncio.sleep(every)
            try:
                await renew()
            except LeaseLost:
                beat_lost = True
                if main is not None:
                    main.cancel()
                return
            except (SQLAlchemyError, OSError) as exc:
                logger.warning("heartbeat failed", error_type=type(exc).__name__)

    beating = asyncio.create_task(beat(), name="lethe-heartbeat")
    try:
        return await work
    except asyncio.CancelledError:
        if (beat_lost or (lost is not None and lost())) and main is not None:
            main.uncancel()
            raise LeaseLost("the lease was taken over while working") from None
        raise
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
