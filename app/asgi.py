"""The application factory: settings, plugins, controllers, exception handlers, OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware

from app.config import Settings, get_settings
from app.db.group_commit import GroupCommitter
from app.db.store import create_store_engine, store_config
from app.domain.audit.controllers import AuditController
from app.domain.audit.jobs import audit_lifespan
from app.domain.audit.sequencer import wake_now
from app.domain.backups.controllers import BackupController
from app.domain.backups.jobs import start_backup_gauges
from app.domain.consent.controllers import ConsentController
from app.domain.examples import EXAMPLES
from app.domain.external.controllers import ExternalTaskController
from app.domain.manifests.controllers import ManifestController
from app.domain.manifests.services import register_directory
from app.domain.recipients.controllers import RecipientController
from app.domain.requests.controllers import RequestController
from app.domain.requests.jobs import start_request_work
from app.domain.retention.controllers import RetentionController
from app.domain.retention.jobs import RetentionRunner, start_retention
from app.domain.system.controllers import MetricsController, SystemController
from app.domain.webhooks.controllers import WebhookController
from app.engine.targets import TargetRegistry
from app.lib.auth import AuthMiddleware, TokenVerifier
from app.lib.http_fixes import allow_header_fixer, enforce_contract
from app.lib.logging import RequestIdMiddleware, configure_logging
from app.lib.loops import LoopWatch
from app.lib.media import MediaTypeMiddleware
from app.lib.metrics import HttpMetricsMiddleware
from app.lib.problems import exception_handlers
from app.lib.ratelimit import RateLimiter, parse_limits
from app.openapi import complete_openapi, docs_assets_router, openapi_config
from app.server import startup_guard

__all__ = ("create_app",)


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the Lethe application; ``settings`` defaults to the environment's."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    engine = create_store_engine(settings)
    verifier = TokenVerifier(settings)
    targets = TargetRegistry(settings)
    retention_runner = RetentionRunner(engine, targets, settings)
    loops = LoopWatch(grace_seconds=settings.worker_lease_seconds)
    limiter = RateLimiter(engine, parse_limits(settings.rate_limits))
    committer = GroupCommitter(
        engine,
        max_batch=settings.group_commit_batch_size,
        queue_size=settings.group_commit_queue_size,
        after_commit=wake_now,
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        """Start-up and shutdown: every background loop runs on ``loops`` (see app.lib.loops)."""
        committer.start()
        try:
            if settings.manifests_dir:
                await register_directory(engine, Path(settings.manifests_dir))
            start_request_work(loops, settings, engine, targets)
            await start_retention(loops, retention_runner, settings)
            start_backup_gauges(loops, settings, engine)
            yield
        finally:
            await committer.close()  # every queued consent is written before the engine goes
            await loops.stop()  # graceful: running requests finish within the grace
            await targets.dispose()
            await engine.dispose()

    v1 = Router(
        path="/v1",
        route_handlers=[
            AuditController,
            ConsentController,
            ManifestController,
            RequestController,
            ExternalTaskController,
            RecipientController,
            RetentionController,
            BackupController,
            WebhookController,
        ],
        middleware=[DefineMiddleware(AuthMiddleware, verifier=verifier), MediaTypeMiddleware],
    )
    fix_allow_header, arm_allow_header = allow_header_fixer()
    app = Litestar(
        route_handlers=[SystemController, MetricsController, v1, docs_assets_router()],
        plugins=[SQLAlchemyPlugin(config=store_config(settings, engine))],
        middleware=[RequestIdMiddleware, HttpMetricsMiddleware],
        exception_handlers=exception_handlers,
        before_request=enforce_contract,
        before_send=[fix_allow_header],
        request_max_body_size=settings.max_body_bytes,
        lifespan=[
            startup_guard(),
            lifespan,
            audit_lifespan(settings, engine, loops),
        ],
        state=State(
            {
                "settings": settings,
                "store_engine": engine,
                "verifier": verifier,
                "targets": targets,
                "retention_runner": retention_runner,
                "loops": loops,
                "rate_limiter": limiter,
                "group_committer": committer,
            }
        ),
        openapi_config=openapi_config(),
        logging_config=None,
        debug=False,
    )
    arm_allow_header(app)
    complete_openapi(app, settings, EXAMPLES)
    return app
