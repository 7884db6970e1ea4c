"""Claims, leases and attempt fencing of request workers.

A claim raises ``attempt`` and sets a lease that a heartbeat extends. Every later write of the
worker (progress, audit, completion) starts with ``UPDATE ... WHERE id = :id AND attempt = :attempt``
in the same transaction: once another worker has taken over an expired lease, the old worker's
writes match no row, it stops, and the newer attempt alone completes the request.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.audit import ErasureTombstone
from app.db.erasure import ErasurePlanRecord
from app.db.requests import SubjectRequest, SubjectRequestSystem
from app.domain.audit import services as audit
from app.domain.requests.artifacts import erase_subject_exports
from app.engine.runs import LeaseLost, SystemOutcome
from app.engine.storage import ArtifactStore

__all__ = ("WORKER_ACTOR", "Claim", "Fence", "claim_next", "claimable")

WORKER_ACTOR = "lethe-worker"
"""The audit actor of everything a worker does."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Claim:
    """A request this worker holds, at this attempt."""

    request_id: uuid.UUID
    attempt: int
    kind: str


class Fence:
    """Progress writes of one claim, each fenced by the claim's attempt (the ``ProgressSink``)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        claim: Claim,
        lease_seconds: int,
        artifacts: ArtifactStore,
    ) -> None:
        self._sessions = sessions
        self._artifacts = artifacts
        self.claim = claim
        self._lease = timedelta(seconds=lease_seconds)
        self.lost = False

    async def fence(self, session: AsyncSession) -> datetime:
        """Extend the lease if this attempt still holds the request; else :class:`LeaseLost`."""
        now = _now()
        result = await session.execute(
            update(SubjectRequest)
            .where(
                SubjectRequest.id == self.claim.request_id,
                SubjectRequest.attempt == self.claim.attempt,
                SubjectRequest.status == "running",
            )
            .values(heartbeat_at=now, lease_expires_at=now + self._lease)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            self.lost = True
            raise LeaseLost(f"request {self.claim.request_id} attempt {self.claim.attempt} was taken over")
        return now

    async def heartbeat(self) -> None:
        async with self._sessions() as session, session.begin():
            await self.fence(session)

    async def save_cursor(self, system: str, cursor: dict[str, Any], counts: Mapping[str, int]) -> None:
        async with self._sessions() as session, session.begin():
            now = await self.fence(session)
            await session.execute(
                update(SubjectRequestSystem)
                .where(
                    SubjectRequestSystem.request_id == self.claim.request_id,
                    SubjectRequestSystem.system == system,
                )
                .values(
                    status="running",
                    cursor=cursor,
                    counts=dict(counts),
                    attempt=self.claim.attempt,
                    updated_at=now,
                )
            )

    async def record_plan(self, system: str, plan: Mapping[str, Any]) -> None:
        async with self._sessions() as session, session.begin():
            now = await self.fence(session)
            session.add(
                ErasurePlanRecord(
                    id=uuid.uuid4(),
                    request_id=str(self.claim.request_id),
                    system=system,
                    attempt=self.claim.attempt,
                    created_at=now,
                    plan=dict(plan),
                )
            )

    async def complete_system(self, system: str, outcome: SystemOutcome, *, action: str | None) -> None:
        async with self._sessions() as session, session.begin():
            now = await self.fence(session)
            await session.execute(
                update(SubjectRequestSystem)
                .where(
                    SubjectRequestSystem.request_id == self.claim.request_id,
                    SubjectRequestSystem.system == system,
                )
                .values(
                    status="completed",
                    not_found=outcome.not_found,
                    counts=dict(outcome.counts),
                    subject_key_ref=outcome.subject_key_ref,
                    cursor=None,
                    attempt=self.claim.attempt,
                    updated_at=now,
                )
            )
            session.add_all(
                ErasureTombstone(
                    system=system, subject_key_ref=ref, erased_at=now, request_id=str(self.claim.request_id)
                )
                for ref in outcome.tombstones
            )
            if action is not None:
                request = await session.get(SubjectRequest, self.claim.request_id)
                key_ref = {"subject_key_ref": outcome.subject_key_ref} if outcome.subject_key_ref else {}
                await audit.append(
                    session,
                    action=action,
                    actor=WORKER_ACTOR,
                    request_id=str(self.claim.request_id),
                    system=system,
                    subject_ref=request.subject_ref if request else None,
                    payload={"not_found": outcome.not_found, **dict(outcome.audit), **key_ref},
                )
            for ref in outcome.tombstones:
                await erase_subject_exports(
                    session,
                    artifacts=self._artifacts,
                    system=system,
                    subject_key_ref=ref,
                    erasure_id=self.claim.request_id,
                    actor=WORKER_ACTOR,
                    now=now,
                )


def claimable(now: datetime) -> Any:
    """Queued, or running with an expired lease (its worker died or stalled)."""
    return or_(
        SubjectRequest.status == "queued",
        and_(SubjectRequest.status == "running", SubjectRequest.lease_expires_at < now),
    )


async def claim_next(
    sessions: async_sessionmaker[AsyncSession], owner: str, lease_seconds: int
) -> Claim | None:
    """Take the oldest queued request, or a running one whose lease expired (resume).

    PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` so concurrent workers never wait on each
    other; SQLite: the conditional UPDATE alone decides (one worker there). The claim raises
    ``attempt``, sets the lease and appends ``request.running`` (or ``request.resumed``).
    """
    async with sessions() as session, session.begin():
        now = _now()
        statement = (
            select(SubjectRequest.id, SubjectRequest.attempt, SubjectRequest.status, SubjectRequest.kind)
            .where(claimable(now))
            .order_by(SubjectRequest.received_at, SubjectRequest.id)
            .limit(1)
        )
        if session.bind.dialect.name == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        row = (await session.execute(statement)).first()
        if row is None:
            return None
        request_id, attempt, status, kind = row
        result = await session.execute(
            update(SubjectRequest)
            .where(SubjectRequest.id == request_id, SubjectRequest.attempt == attempt, claimable(now))
            .values(
                status="running",
                attempt=attempt + 1,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                heartbeat_at=now,
                started_at=func.coalesce(SubjectRequest.started_at, now),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None  # another worker won the race (SQLite): look again next time
        subject_ref = (
            await session.execute(select(SubjectRequest.subject_ref).where(SubjectRequest.id == request_id))
        ).scalar_one()
        await audit.append(
            session,
            action="request.resumed" if status == "running" else "request.running",
            actor=WORKER_ACTOR,
            request_id=str(request_id),
            subject_ref=subject_ref,
            payload={"kind": kind, "from": status, "to": "running", "attempt": attempt + 1},
        )
    return Claim(request_id=request_id, attempt=attempt + 1, kind=kind)
