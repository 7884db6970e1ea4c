"""Claims, leases and attempt fencing of request workers (on :mod:`app.lib.leases`).

A claim raises ``attempt`` (the lease's fencing token) and sets a lease that a heartbeat extends.
Every later write of the worker (progress, audit, completion) starts with
``UPDATE ... WHERE id = :id AND attempt = :attempt`` in the same transaction: once another worker
has taken over an expired lease, the old worker's writes match no row, it stops, and the newer
attempt alone completes the request.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.audit import ErasureTombstone
from app.db.erasure import ErasurePlanRecord
from app.db.requests import SubjectRequest, SubjectRequestSystem
from app.domain.audit import services as audit
from app.domain.requests.artifacts import erase_subject_exports
from app.engine.runs import SystemOutcome
from app.engine.storage import ArtifactStore
from app.lib.clock import utcnow
from app.lib.leases import Holder, LeaseLost, LeaseTable

__all__ = ("REQUEST_LEASE", "WORKER_ACTOR", "Claim", "Fence", "claim_next", "claimable")

WORKER_ACTOR = "lethe-worker"
"""The audit actor of everything a worker does."""

REQUEST_LEASE = LeaseTable(
    key=SubjectRequest.id,
    owner=SubjectRequest.lease_owner,
    expires_at=SubjectRequest.lease_expires_at,
    token=SubjectRequest.attempt,
    heartbeat_at=SubjectRequest.heartbeat_at,
)
"""Where a request keeps its lease; ``attempt`` is the fencing token."""


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
        self._lease_seconds = lease_seconds
        self._holder = Holder(key=claim.request_id, owner="", token=claim.attempt)
        self.lost = False

    async def fence(self, session: AsyncSession) -> datetime:
        """Extend the lease if this attempt still holds the request; else :class:`LeaseLost`."""
        try:
            return await REQUEST_LEASE.renew(
                session, self._holder, seconds=self._lease_seconds, where=[SubjectRequest.status == "running"]
            )
        except LeaseLost:
            self.lost = True
            raise

    def _system_row(self, system: str) -> Any:
        """``UPDATE`` of this request's progress row of ``system`` (values to be added)."""
        return update(SubjectRequestSystem).where(
            SubjectRequestSystem.request_id == self.claim.request_id, SubjectRequestSystem.system == system
        )

    async def heartbeat(self) -> None:
        async with self._sessions() as session, session.begin():
            await self.fence(session)

    async def save_cursor(self, system: str, cursor: dict[str, Any], counts: Mapping[str, int]) -> None:
        async with self._sessions() as session, session.begin():
            now = await self.fence(session)
            await session.execute(
                self._system_row(system).values(
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
                self._system_row(system).values(
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
        now = utcnow()
        holder = await REQUEST_LEASE.claim_next(
            session,
            owner=owner,
            seconds=lease_seconds,
            ready=claimable(now),
            order_by=(SubjectRequest.received_at, SubjectRequest.id),
            columns=(SubjectRequest.status, SubjectRequest.kind, SubjectRequest.subject_ref),
            values={
                "status": "running",
                "started_at": func.coalesce(SubjectRequest.started_at, now),
                "updated_at": now,
            },
            now=now,
        )
        if holder is None or holder.token is None:
            return None  # nothing ready, or another worker won the race (SQLite): look again later
        status, kind, subject_ref = holder.row
        await audit.append(
            session,
            action="request.resumed" if status == "running" else "request.running",
            actor=WORKER_ACTOR,
            request_id=str(holder.key),
            subject_ref=subject_ref,
            payload={"kind": kind, "from": status, "to": "running", "attempt": holder.token},
        )
    return Claim(request_id=holder.key, attempt=holder.token, kind=kind)
