"""Exception handlers turning every error into ``application/problem+json``, in one place.

Domain errors (:class:`app.lib.errors.LetheError`) carry their status and problem type; engine
errors (:class:`app.engine.errors.EngineError`) carry none, and :data:`ENGINE_PROBLEMS` says which
HTTP status each family answers with (an unmapped one is an internal error, 500).
"""

from __future__ import annotations

import traceback
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import DBAPIError

from app.engine.errors import EngineError, TargetBlocks
from app.lib.errors import Conflict, LetheError, connection_dropped, problem_type
from app.lib.logging import get_logger
from app.lib.schema import Problem, ProblemFieldError

__all__ = ("ENGINE_PROBLEMS", "PROBLEM_MEDIA_TYPE", "exception_handlers", "problem_responses")

PROBLEM_MEDIA_TYPE = "application/problem+json"
logger = get_logger("lethe.errors")

_HTTP_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("invalid-token", "Invalid or missing bearer token"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    410: ("gone", "Gone"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation", "Validation failed"),
    429: ("too-many-requests", "Too many requests"),
    503: ("unavailable", "Service unavailable"),
}
_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing, malformed, expired or forged bearer token",
    403: "The token lacks the required scope",
    404: "No such resource",
    409: "The resource's state does not allow this",
    410: "Deleted on purpose (an export whose subject was erased afterwards)",
    413: "Body larger than the configured limit",
    422: "Invalid input; `errors` names each field",
    429: "Too many requests",
    503: "The service store or a target database is unavailable",
}


def _response(problem: Problem, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(
        content=msgspec.json.encode(problem),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _lethe_error(request: Request[Any, Any, Any], exc: LetheError) -> Response[bytes]:
    extra = dict(exc.extra)
    raw_errors = extra.pop("errors", None)
    errors = [ProblemFieldError(field=e["field"], message=e["message"]) for e in raw_errors or []]
    problem = Problem(
        type=exc.type,
        title=exc.title,
        status=exc.status,
        detail=exc.detail,
        instance=request.url.path,
        errors=errors or None,
        extra=extra or None,
    )
    return _response(problem, exc.headers)


ENGINE_PROBLEMS: dict[type[EngineError], type[LetheError]] = {
    TargetBlocks: Conflict,
}
"""Engine error family -> the domain error whose status it answers with; the problem ``type`` and
``title`` are the engine error's own (e.g. ``ErasureBlocked``: 409 ``erasure-blocked``)."""


def _engine_error(request: Request[Any, Any, Any], exc: EngineError) -> Response[bytes]:
    mapped = next((ENGINE_PROBLEMS[cls] for cls in type(exc).__mro__ if cls in ENGINE_PROBLEMS), None)
    if mapped is None:
        return _unexpected(request, exc)
    problem = Problem(
        type=problem_type(exc.slug),
        title=exc.title,
        status=mapped.status,
        detail=exc.detail,
        instance=request.url.path,
        extra=dict(exc.extra) or None,
    )
    return _response(problem)


def _field_errors(exc: ValidationException) -> list[ProblemFieldError]:
    errors: list[ProblemFieldError] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            source = item.get("source") or "body"
            source = getattr(source, "value", source)  # Litestar's ParamType enum -> "query"
            key = item.get("key") or ""
            field = f"{source}.{key}" if key else str(source)
            errors.append(ProblemFieldError(field=field, message=str(item.get("message", "invalid"))))
    return errors


def _validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    errors = _field_errors(exc)
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or str(exc.detail)
    problem = Problem(
        type=problem_type("validation"),
        title="Validation failed",
        status=422,
        detail=detail,
        instance=request.url.path,
        errors=errors or None,
    )
    return _response(problem)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    slug, title = _HTTP_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
    headers = dict(exc.headers or {})
    if isinstance(exc, NotAuthorizedException):
        headers.setdefault("WWW-Authenticate", 'Bearer realm="lethe"')
    problem = Problem(
        type=problem_type(slug),
        title=title,
        status=exc.status_code,
        detail=str(exc.detail),
        instance=request.url.path,
    )
    return _response(problem, headers)


def _unreadable_body(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """A body that cannot be decoded at all: nested past the parser's depth, or not UTF-8."""
    reason = "nested too deeply" if isinstance(exc, RecursionError) else "not valid UTF-8"
    problem = Problem(
        type=problem_type("bad-request"),
        title="Bad request",
        status=400,
        detail=f"the request body cannot be decoded: {reason}",
        instance=request.url.path,
    )
    return _response(problem)


def _database_error(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[bytes]:
    """A connection the database server ended (restart, failover, a proxy's idle timeout) is a
    503 to retry: nothing of the request's transaction was applied, and the pool has let go of
    the dead connection. Any other database error is unexpected."""
    if not connection_dropped(exc):
        return _unexpected(request, exc)
    logger.warning("database connection lost", error_type=type(exc.orig).__name__, path=request.url.path)
    problem = Problem(
        type=problem_type("unavailable"),
        title="Service unavailable",
        status=503,
        detail="the connection to a database was lost; nothing was changed, retry the call",
        instance=request.url.path,
    )
    return _response(problem, {"Retry-After": "1"})


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # The exception text may contain values from a target database: log only its type.
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f"{frame.filename}:{frame.lineno}" if frame else None
    logger.error(
        "unhandled error",
        error_type=type(exc).__name__,
        where=where,
        path=request.url.path,
    )
    problem = Problem(
        type=problem_type("internal"),
        title="Internal error",
        status=HTTP_500_INTERNAL_SERVER_ERROR,
        detail="an unexpected error occurred; see the service logs by request id",
        instance=request.url.path,
    )
    return _response(problem)


exception_handlers: ExceptionHandlersMap = {
    LetheError: _lethe_error,
    EngineError: _engine_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    RecursionError: _unreadable_body,
    UnicodeDecodeError: _unreadable_body,
    DBAPIError: _database_error,
    Exception: _unexpected,
}


def problem_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries documenting problem+json answers for the given status codes."""
    return {
        code: ResponseSpec(
            data_container=Problem,
            description=_DESCRIPTIONS[code],
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,  # random examples would make the committed spec drift
        )
        for code in codes
    }
