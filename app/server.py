"""Serving the app with uvicorn: a start-up failure exits at once, non-zero, with one line."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar

from app.config import Settings
from app.lib.errors import ConfigurationError, LetheError
from app.lib.logging import get_logger
from app.lib.settings_checks import unknown_variables

__all__ = ("STARTUP_ERROR_KEY", "describe_failure", "serve", "startup_guard")

STARTUP_ERROR_KEY = "startup_error"
"""Key of ``app.state`` where :func:`startup_guard` keeps the exception that stopped start-up."""
logger = get_logger("lethe.settings")
EXIT_CONFIGURATION = 2
EXIT_STARTUP_FAILED = 3


def startup_guard() -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The first lifespan of the app: remembers why a later one failed to start.

    uvicorn only logs a failed start-up; keeping the exception lets :func:`serve` name the cause
    in one line before it exits.
    """

    @asynccontextmanager
    async def guard(app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        except BaseException as exc:
            app.state.setdefault(STARTUP_ERROR_KEY, exc)
            raise

    return guard


def _root_cause(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def describe_failure(error: BaseException | None) -> tuple[str, int]:
    """One line naming why start-up failed, and the exit code (2 for configuration, 3 otherwise)."""
    if error is None:
        return "the server did not start (see the log lines above)", EXIT_STARTUP_FAILED
    error = _root_cause(error)
    if isinstance(error, ConfigurationError):
        return f"configuration error: {error}", EXIT_CONFIGURATION
    text = error.detail if isinstance(error, LetheError) else str(error)
    first_line = (text.strip().splitlines() or [""])[0][:300]
    return f"start-up failed: {type(error).__name__}: {first_line}".rstrip(": "), EXIT_STARTUP_FAILED


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the app until SIGTERM; when start-up fails, print one line and exit non-zero at once.

    The exit after a failed start-up does not wait for threads a half-started component may have
    left (a database driver's, say): a pod must restart, never hang unready.
    """
    import uvicorn

    from app.asgi import create_app

    app = create_app(settings)
    for warning in unknown_variables(os.environ):
        logger.warning(warning)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="on",
            log_config=None,
            server_header=False,
            proxy_headers=False,
        )
    )
    code = 0
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits like this when it cannot bind the port
        code = exc.code if isinstance(exc.code, int) and exc.code else EXIT_STARTUP_FAILED
    if server.started and code == 0:
        return
    line, failure_code = describe_failure(app.state.get(STARTUP_ERROR_KEY))
    sys.stderr.write(f"lethe: {line}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(failure_code if STARTUP_ERROR_KEY in app.state else code or failure_code)
