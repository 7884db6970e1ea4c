"""The audit sequencer: links committed events into the chain, in batches, one commit per batch.

Writers queue events in ``audit_pending`` without any lock (:func:`app.domain.audit.services.append`).
One sequencer across all replicas holds the lease (``audit_sequencer``, fenced like the request
workers' claims) and integrates what is pending: it reads the head, gives each event the next
``seq``, links it (keyed HMAC, :mod:`app.domain.audit.links`), inserts the links and deletes the
pending rows in one transaction. Every batch, and every on-demand flush (:func:`sequence_now`),
starts by writing the lease row, which holds that row's lock until it commits, so batches never
interleave; a sequencer whose lease was taken over matches no row and writes nothing; the
primary key on ``seq`` and the unique ``event_id`` refuse a fork or a double link even then. A
crash mid-batch rolls the whole batch back: its events stay pending for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from prometheus_client import Counter, Histogram
from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.config import Settings
from app.db.audit import AuditEvent, AuditPending, AuditSequencer
from app.domain.audit.links import (
    CHAIN_KEYED_ACTION,
    CONTENT_FIELDS,
    GENESIS_HASH,
    engine_keyring,
    event_hash,
)
from app.lib.clock import utcnow
from app.lib.crypto import ChainKeyring
from app.lib.leases import Holder, LeaseLost, LeaseTable, owner_id
from app.lib.logging import get_logger
from app.lib.signals import CommitSignal

__all__ = (
    "LAG_SECONDS",
    "hold_lease",
    "integrate",
    "pending_count",
    "release_lease",
    "run_sequencer",
    "sequence_now",
    "wake_now",
    "wake_on_commit",
)

LEASE = "audit"
"""The name of the sequencer's lease row."""
ANCHOR_ACTOR = "system:audit"
DEFAULT_BATCH = 1000
EVENTS = cast("Table", AuditEvent.__table__)
PENDING = cast("Table", AuditPending.__table__)

logger = get_logger("lethe.audit")

LAG_SECONDS = Histogram(
    "lethe_audit_sequencing_lag_seconds",
    "Time from an audit event's append to its link in the chain (sequencing lag)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SEQUENCED = Counter("lethe_audit_sequenced_events", "Audit events linked into the chain by this process")


# --- waking the sequencer of this process ------------------------------------------------------

_WAKE = CommitSignal("audit_sequencer")


def wake_on_commit(session: Any) -> None:
    """Wake this process's sequencer once ``session`` commits (it queued an audit event)."""
    _WAKE.mark(session)


def wake_now() -> None:
    """Wake this process's sequencer now (events were committed outside a session: group commit)."""
    _WAKE.set()


# --- the lease (app.lib.leases: one well-known row of audit_sequencer) ------------------------

SEQUENCER_LEASE = LeaseTable(
    key=AuditSequencer.name,
    owner=AuditSequencer.owner,
    expires_at=AuditSequencer.expires_at,
    token=AuditSequencer.fence,
)


async def hold_lease(
    session: AsyncSession, owner: str, lease_seconds: float, holder: Holder | None = None
) -> Holder | None:
    """Take the sequencer lease (``holder`` None) or extend it, fenced (``holder`` given).

    Taking succeeds when the lease is free or expired and raises the fence; extending succeeds
    only while the fence is still the holder's. Either way the lease row stays locked until the
    caller's transaction ends. Returns the holder, or None (held by another / taken over).
    """
    if holder is None:
        return await SEQUENCER_LEASE.acquire(session, LEASE, owner=owner, seconds=lease_seconds)
    try:
        await SEQUENCER_LEASE.renew(session, holder, seconds=lease_seconds)
    except LeaseLost:
        return None
    return holder


async def release_lease(engine: AsyncEngine, holder: Holder) -> None:
    """Give the lease up (shutdown), so a standby takes over without waiting for it to expire."""
    async with AsyncSession(engine) as session, session.begin():
        await SEQUENCER_LEASE.release(session, holder)


async def _lock_lease_row(session: AsyncSession) -> None:
    """Serialise an on-demand flush with the batches of the leaseholder (no lease taken)."""
    await session.execute(
        update(AuditSequencer)
        .where(AuditSequencer.name == LEASE)
        .values(fence=AuditSequencer.fence)
        .execution_options(synchronize_session=False)
    )


# --- integrating a batch -----------------------------------------------------------------------


async def _head(session: AsyncSession) -> tuple[int, str, int | None]:
    row = (
        await session.execute(
            select(AuditEvent.seq, AuditEvent.hash, AuditEvent.epoch).order_by(AuditEvent.seq.desc()).limit(1)
        )
    ).first()
    return (0, GENESIS_HASH, None) if row is None else (int(row[0]), str(row[1]), int(row[2]))


def _link(keyring: ChainKeyring, seq: int, prev_hash: str, content: dict[str, Any]) -> dict[str, Any]:
    digest = event_hash(seq=seq, prev_hash=prev_hash, epoch=keyring.epoch, keyring=keyring, **content)
    assert digest is not None  # noqa: S101 - engine_keyring() checked the current epoch's key
    return {**content, "seq": seq, "prev_hash": prev_hash, "hash": digest, "epoch": keyring.epoch}


def _anchor(keyring: ChainKeyring, head_seq: int, head_epoch: int) -> dict[str, Any]:
    """The first event under a newer key: it anchors the history written under older ones."""
    return {
        "occurred_at": utcnow(),
        "actor": ANCHOR_ACTOR,
        "action": CHAIN_KEYED_ACTION,
        "request_id": None,
        "system": None,
        "subject_ref": None,
        "payload": {"from_epoch": head_epoch, "to_epoch": keyring.epoch, "anchored_seq": head_seq},
        "event_id": uuid.uuid4(),
    }


async def integrate(
    session: AsyncSession,
    keyring: ChainKeyring,
    *,
    limit: int,
    holder: Holder | None = None,
    lease_seconds: float = 0,
) -> list[datetime]:
    """Link up to ``limit`` pending events inside the caller's transaction (it commits them).

    With ``holder``, the lease is extended first and :class:`LeaseLost` raised when it was taken
    over; without, the lease row is only locked (an on-demand flush). Returns the append times of
    the events linked, oldest queue position first.
    """
    if holder is not None:
        if await hold_lease(session, holder.owner, lease_seconds, holder) is None:
            raise LeaseLost(
                f"the audit sequencer lease of {holder.owner} (fence {holder.token}) was taken over"
            )
    else:
        await _lock_lease_row(session)
    columns = [getattr(AuditPending, name) for name in (*CONTENT_FIELDS, "event_id")]
    pending = (
        await session.execute(select(AuditPending.id, *columns).order_by(AuditPending.id).limit(limit))
    ).all()
    if not pending:
        return []
    head_seq, head_hash, head_epoch = await _head(session)
    contents = [dict(row._mapping) for row in pending]
    ids = [content.pop("id") for content in contents]
    if head_epoch is not None and head_epoch < keyring.epoch:
        contents.insert(0, _anchor(keyring, head_seq, head_epoch))
    links = []
    for content in contents:
        head_seq += 1
        link = _link(keyring, head_seq, head_hash, {k: v for k, v in content.items() if k != "event_id"})
        links.append({**link, "event_id": content["event_id"]})
        head_hash = link["hash"]
    await session.execute(insert(EVENTS), links)
    removed = await session.execute(delete(PENDING).where(PENDING.c.id.in_(ids)))
    if removed.rowcount != len(ids):  # type: ignore[attr-defined]
        raise LeaseLost("pending audit events were linked by another sequencer; batch abandoned")
    return [row.occurred_at for row in pending]


def _observe(appended: Sequence[datetime]) -> None:
    now = utcnow()
    for moment in appended:
        LAG_SECONDS.observe(max(0.0, (now - moment).total_seconds()))
    SEQUENCED.inc(len(appended))


async def _batch(engine: AsyncEngine, limit: int, holder: Holder | None, lease_seconds: float) -> int:
    keyring = engine_keyring(engine.sync_engine.get_execution_options())
    async with AsyncSession(engine) as session, session.begin():
        appended = await integrate(session, keyring, limit=limit, holder=holder, lease_seconds=lease_seconds)
    _observe(appended)
    return len(appended)


async def sequence_now(
    engine: AsyncEngine, *, batch_size: int = DEFAULT_BATCH, max_events: int | None = None
) -> int:
    """Link every event pending now (read-your-writes for audit reads, tests and the CLI).

    Runs in the caller's process without taking the lease, serialised with the active
    sequencer's batches by the lease row lock. Stops when nothing is pending, or after about
    ``max_events``. Returns how many events it linked.
    """
    total = 0
    while max_events is None or total < max_events:
        linked = await _batch(engine, batch_size, None, 0)
        total += linked
        if linked < batch_size:
            break
    return total


async def pending_count(connection: AsyncConnection) -> int:
    """Events committed by their writers and not linked yet."""
    return int((await connection.execute(select(func.count()).select_from(AuditPending))).scalar_one())


async def _wait(seconds: float, gather: float) -> None:
    """Until a commit of this process wakes us (then ``gather`` more, to batch its neighbours),
    or ``seconds`` pass (the poll for other replicas' events)."""
    signal = _WAKE.event()
    try:
        await asyncio.wait_for(signal.wait(), timeout=seconds)
    except TimeoutError:
        return
    await asyncio.sleep(gather)
    signal.clear()


async def run_sequencer(settings: Settings, engine: AsyncEngine) -> None:
    """Take the lease when it is free and link pending events until cancelled.

    A standby replica retries the lease every third of its duration; the holder runs a batch
    shortly after a commit of this process wakes it (``audit_sequencer_gather_seconds`` later, so
    one batch takes the commits of that moment), or every poll interval for the other replicas'
    events, and extends the lease with every batch. On cancellation the lease is released.
    """
    owner = owner_id(f"audit-sequencer-{uuid.uuid4().hex[:8]}")
    lease = float(settings.audit_sequencer_lease_seconds)
    holder: Holder | None = None
    try:
        while True:
            started = time.monotonic()
            try:
                if holder is None:
                    async with AsyncSession(engine) as session, session.begin():
                        holder = await hold_lease(session, owner, lease)
                    if holder is None:
                        await asyncio.sleep(lease / 3)
                        continue
                    logger.info("audit sequencer lease taken", fence=holder.token)
                linked = await _batch(engine, settings.audit_sequencer_batch_size, holder, lease)
            except LeaseLost:
                logger.warning("audit sequencer lease lost")
                holder = None
                continue
            except Exception as error:  # the store is down: keep the loop, retry after a pause
                logger.warning("audit sequencing failed", error_type=type(error).__name__)
                await asyncio.sleep(min(lease / 3, 5.0))
                continue
            if linked < settings.audit_sequencer_batch_size:
                poll = max(0.0, settings.audit_sequencer_poll_seconds - (time.monotonic() - started))
                await _wait(poll, settings.audit_sequencer_gather_seconds)
    finally:
        if holder is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(release_lease(engine, holder))
