"""JSON log lines with a request id; paths are logged without query strings (they may hold identities)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ("EventLogger", "RequestIdMiddleware", "configure_logging", "get_logger", "request_id_var")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_FIELDS = "lethe_fields"
"""The one ``extra`` key an :class:`EventLogger` sets: every field travels inside it, so no field
name can collide with a ``LogRecord`` attribute (``created``, ``name``, ``msg``...)."""
_SKIPPED = frozenset({*_STANDARD, "color_message", _FIELDS})
"""Record attributes not copied as fields: the record's own, uvicorn's ANSI copy of the message."""


class EventLogger:
    """A logger taking structured fields as keyword arguments: ``log.info("loaded", system="shop")``.

    Fields are nested under one ``extra`` key and flattened by :class:`JsonFormatter`, so any field
    name is safe; one that equals a key already on the line (``message``, ``time``...) is written
    with a trailing underscore. Fields must never carry personal data (counts, names of systems,
    tables and columns, request ids).
    """

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def _log(self, level: int, message: str, fields: dict[str, object]) -> None:
        if self.logger.isEnabledFor(level):
            self.logger.log(level, message, extra={_FIELDS: fields}, stacklevel=3)

    def debug(self, message: str, /, **fields: object) -> None:
        """Log at DEBUG."""
        self._log(logging.DEBUG, message, fields)

    def info(self, message: str, /, **fields: object) -> None:
        """Log at INFO (the default level)."""
        self._log(logging.INFO, message, fields)

    def warning(self, message: str, /, **fields: object) -> None:
        """Log at WARNING."""
        self._log(logging.WARNING, message, fields)

    def error(self, message: str, /, **fields: object) -> None:
        """Log at ERROR, without a traceback (its text could quote values of a target)."""
        self._log(logging.ERROR, message, fields)


def get_logger(name: str) -> EventLogger:
    """The structured logger of ``name`` (every Lethe module logs through one of these)."""
    return EventLogger(name)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (rid := request_id_var.get()) is not None:
            entry["request_id"] = rid
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
        fields = dict(getattr(record, _FIELDS, None) or {})
        fields.update((k, v) for k, v in record.__dict__.items() if k not in _SKIPPED)
        for key, value in fields.items():
            entry[f"{key}_" if key in entry else key] = value
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    """Route every logger (ours, uvicorn's, SQLAlchemy's) through the JSON formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # uvicorn's access log prints the query string; ours below does not.
    logging.getLogger("uvicorn.access").disabled = True
    # Alembic announces its dialect every time /readyz reads the revision; keep what it migrates.
    alembic = logging.getLogger("alembic.runtime.migration")
    alembic.filters[:] = [_quiet_alembic]


def _quiet_alembic(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(("Context impl", "Will assume"))


def _status_of(error: BaseException | None, sent: int) -> int:
    """The status the problem handlers give ``error`` (LetheError.status, HTTPException.status_code)."""
    if error is None:
        return sent
    for attribute in ("status", "status_code"):
        value = getattr(error, attribute, None)
        if isinstance(value, int) and 400 <= value <= 599:
            return value
    return 500


class RequestIdMiddleware:
    """Assigns ``X-Request-ID`` (or keeps a sane one from the caller) and logs one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.logger = get_logger("lethe.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = (
            incoming if 0 < len(incoming) <= 64 and incoming.replace("-", "").isalnum() else uuid.uuid4().hex
        )
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # An exception is answered by the handlers outside this middleware: log their status.
            status = _status_of(sys.exc_info()[1], status)
            self.logger.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            request_id_var.reset(token)
