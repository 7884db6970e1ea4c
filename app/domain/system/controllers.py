"""Liveness, readiness and Prometheus metrics; none of them need a token."""

from __future__ import annotations

import asyncio

from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.config import Settings
from app.db.store import current_revision, head_revision
from app.domain.system.schemas import Health, Readiness
from app.engine.storage import artifact_store
from app.lib.settings_checks import missing_keys

__all__ = ("ARTIFACT_CHECK_SECONDS", "MetricsController", "SystemController")

ARTIFACT_CHECK_SECONDS = 2.0
"""How long readiness waits for the artifact store (a probe must answer before its own timeout)."""

METRICS_EXAMPLE = """\
# HELP lethe_subject_requests Data-subject requests in the store, by kind and status
# TYPE lethe_subject_requests gauge
lethe_subject_requests{kind="access",status="completed"} 12.0
"""


class SystemController(Controller):
    """Probes for Kubernetes."""

    tags = ["system"]

    @get("/healthz", operation_id="Healthz", summary="Liveness: the process answers")
    async def healthz(self) -> Health:
        """Cheap on purpose: a liveness probe must not fail because a database is slow."""
        return Health(status="ok")

    @get(
        "/readyz",
        operation_id="Readyz",
        summary="Readiness: store reachable and migrated, artifact store writable",
        responses={
            503: ResponseSpec(
                data_container=Readiness,
                description="Store unreachable or not migrated, a key missing, or the artifact store "
                "(directory or S3 bucket) unavailable",
            )
        },
    )
    async def readyz(self, state: State) -> Response[Readiness]:
        """503 until the store answers, is at the migration head this build ships, every key the
        service needs is configured, and the artifact store takes writes (the directory is
        writable, or the S3 bucket answers a listing) within ``ARTIFACT_CHECK_SECONDS``."""
        head = head_revision()
        try:
            async with state.store_engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            revision = await current_revision(state.store_engine)
        except (SQLAlchemyError, OSError) as exc:
            body = Readiness(
                status="unavailable",
                store="unreachable",
                revision=None,
                head=head,
                detail=type(exc).__name__,
            )
            return Response(body, status_code=503)
        dead = state.loops.dead() if "loops" in state else {}
        if dead:
            body = Readiness(
                status="unavailable",
                store="reachable",
                revision=revision,
                head=head,
                detail="background loop died: " + ", ".join(sorted(dead)),
            )
            return Response(body, status_code=503)
        if revision != head:
            body = Readiness(
                status="unavailable",
                store="reachable",
                revision=revision,
                head=head,
                detail="service store is not migrated to head; run 'lethe database upgrade'",
            )
            return Response(body, status_code=503)
        if missing := missing_keys(state.settings):
            body = Readiness(
                status="unavailable",
                store="reachable",
                revision=revision,
                head=head,
                detail="; ".join(missing),
            )
            return Response(body, status_code=503)
        if problem := await _artifact_problem(state.settings):
            body = Readiness(
                status="unavailable",
                store="reachable",
                revision=revision,
                head=head,
                detail=problem,
                artifacts="unavailable",
            )
            return Response(body, status_code=503)
        body = Readiness(status="ok", store="reachable", revision=revision, head=head, artifacts="writable")
        return Response(body)


async def _artifact_problem(settings: Settings) -> str | None:
    """What keeps exports from being stored (see ``ArtifactStore.check``), within
    :data:`ARTIFACT_CHECK_SECONDS`; None when the artifact store answers."""
    try:
        async with asyncio.timeout(ARTIFACT_CHECK_SECONDS):
            return await asyncio.to_thread(artifact_store(settings).check)
    except TimeoutError:
        return f"artifact store did not answer within {ARTIFACT_CHECK_SECONDS:g} s"


class MetricsController(Controller):
    """Prometheus exposition at ``/metrics``."""

    path = "/metrics"
    tags = ["system"]

    @get(
        "/",
        operation_id="GetMetrics",
        summary="Prometheus metrics (text exposition format)",
        media_type=CONTENT_TYPE_LATEST,
        responses={
            200: ResponseSpec(
                data_container=str,
                media_type=CONTENT_TYPE_LATEST.split(";")[0],
                description="Metrics in the Prometheus text format 0.0.4.",
                generate_examples=False,
                examples=[Example(summary="One sample", value=METRICS_EXAMPLE)],
            )
        },
    )
    async def metrics(self) -> Response[bytes]:
        """Request counts and latencies, request and retention gauges, backup health."""
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
