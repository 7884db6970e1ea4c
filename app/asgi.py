"""The application factory: settings, plugins, controllers, exception handlers, OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from app import __version__
from app.config import Settings, get_settings
from app.db.store import create_store_engine, store_config
from app.domain.audit.controllers import AuditController
from app.domain.audit.jobs import checkpoint_sink_lifespan
from app.domain.backups.controllers import BackupController
from app.domain.backups.jobs import backup_gauge_refresher
from app.domain.consent.controllers import ConsentController
from app.domain.manifests.controllers import ManifestController
from app.domain.manifests.services import register_directory
from app.domain.requests.controllers import RequestController
from app.domain.retention.controllers import RetentionController
from app.domain.retention.jobs import RetentionRunner, retention_lifespan
from app.domain.system.controllers import MetricsController, SystemController
from app.engine.targets import TargetRegistry
from app.lib.auth import AuthMiddleware, TokenVerifier
from app.lib.logging import RequestIdMiddleware, configure_logging
from app.lib.loops import LoopWatch
from app.lib.media import MediaTypeMiddleware
from app.lib.metrics import HttpMetricsMiddleware
from app.lib.problems import exception_handlers
from app.lib.ratelimit import RateLimiter, parse_limits
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
    loops = LoopWatch()
    limiter = RateLimiter(engine, parse_limits(settings.rate_limits))

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        from app.domain.requests.jobs import background_tasks

        try:
            if settings.manifests_dir:
                await register_directory(engine, Path(settings.manifests_dir))
            async with background_tasks(settings, engine, targets):
                yield
        finally:
            await targets.dispose()
            await engine.dispose()

    v1 = Router(
        path="/v1",
        route_handlers=[
            AuditController,
            ConsentController,
            ManifestController,
            RequestController,
            RetentionController,
            BackupController,
        ],
        middleware=[DefineMiddleware(AuthMiddleware, verifier=verifier), MediaTypeMiddleware],
        security=[{"BearerToken": []}],
    )
    return Litestar(
        route_handlers=[SystemController, MetricsController, v1],
        plugins=[SQLAlchemyPlugin(config=store_config(settings, engine))],
        middleware=[RequestIdMiddleware, HttpMetricsMiddleware],
        exception_handlers=exception_handlers,
        request_max_body_size=settings.max_body_bytes,
        lifespan=[
            startup_guard(),
            lifespan,
            retention_lifespan(retention_runner, settings, loops),
            checkpoint_sink_lifespan(settings, engine, loops),
            backup_gauge_refresher(settings, engine),
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
            }
        ),
        openapi_config=OpenAPIConfig(
            title="Lethe",
            version=__version__,
            description="GDPR data-subject requests: access, rectification, erasure, retention, audit.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        bearer_format="JWT",
                        description="JWT with the scopes each operation names",
                    ),
                }
            ),
            use_handler_docstrings=True,
        ),
        logging_config=None,
        debug=False,
    )
