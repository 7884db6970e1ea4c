"""One hierarchy of domain errors, mapped to RFC 9457 problem+json in one place."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy.exc import DBAPIError

__all__ = (
    "ConfigurationError",
    "Conflict",
    "DestinationRefused",
    "ExportErased",
    "Forbidden",
    "Gone",
    "IdempotencyConflict",
    "IdempotencyInProgress",
    "IdentitiesExpired",
    "InsufficientScope",
    "InvalidToken",
    "LetheError",
    "ManifestInvalid",
    "NotFound",
    "PayloadTooLarge",
    "SelfApproval",
    "TargetRefused",
    "TargetUnavailable",
    "TaskCancelled",
    "TooManyRequests",
    "Unavailable",
    "UnsupportedMediaType",
    "ValidationFailed",
    "connection_dropped",
    "field_error",
    "problem_type",
)

PROBLEM_TYPE_BASE = "urn:lethe:problem:"


def problem_type(slug: str) -> str:
    """The stable ``type`` URI of a problem, e.g. ``urn:lethe:problem:not-found``."""
    return PROBLEM_TYPE_BASE + slug


def field_error(field: str, message: str) -> dict[str, str]:
    """One entry of :class:`ValidationFailed` ``errors``: where (``body.kind``) and what is wrong."""
    return {"field": field, "message": message}


class ConfigurationError(Exception):
    """A setting is missing or malformed; the message is one line naming the variable."""


class LetheError(Exception):
    """Base of every error a client can see.

    Subclasses fix ``status``, ``slug`` and ``title``; the message is the ``detail`` and must
    never contain personal data: name tables, columns, systems and request ids only.
    """

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}

    @property
    def type(self) -> str:
        """The stable problem type URI."""
        return problem_type(self.slug)


class InvalidToken(LetheError):
    """Missing, malformed, expired or forged bearer token."""

    status = 401
    slug = "invalid-token"
    title = "Invalid or missing bearer token"

    def __init__(self, detail: str, *, error: str = "invalid_token") -> None:
        challenge = f'Bearer realm="lethe", error="{error}", error_description="{detail}"'
        if error == "missing":
            challenge = 'Bearer realm="lethe"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class Forbidden(LetheError):
    """The caller is authenticated but may not do this."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"


class InsufficientScope(Forbidden):
    """The token lacks the scope the operation requires."""

    slug = "insufficient-scope"
    title = "Insufficient scope"

    def __init__(self, scope: str) -> None:
        super().__init__(
            f"this operation requires the scope '{scope}'",
            extra={"required_scope": scope},
            headers={
                "WWW-Authenticate": f'Bearer realm="lethe", error="insufficient_scope", scope="{scope}"'
            },
        )


class SelfApproval(Forbidden):
    """Four eyes: the principal that created a request may not approve it."""

    slug = "approval-by-creator"
    title = "The creator of a request cannot approve it"


class NotFound(LetheError):
    """The named resource does not exist."""

    status = 404
    slug = "not-found"
    title = "Not found"


class Gone(LetheError):
    """The resource existed and was deleted on purpose (an export whose subject was erased)."""

    status = 410
    slug = "gone"
    title = "Gone"


class ExportErased(Gone):
    """The export was deleted because its subject was erased afterwards."""

    slug = "export-erased"
    title = "Export deleted by an erasure"


class IdentitiesExpired(Gone):
    """An external task's one-time identity read is past its time to live."""

    slug = "task-identities-expired"
    title = "The task's identities are no longer available"


class Conflict(LetheError):
    """The resource is not in a state that allows the operation."""

    status = 409
    slug = "conflict"
    title = "Conflict"


class IdempotencyInProgress(Conflict):
    """A request with the same Idempotency-Key is still being processed."""

    slug = "idempotency-in-progress"
    title = "A request with this Idempotency-Key is in progress"


class TaskCancelled(Conflict):
    """An external system reported on a task its request no longer waits for (it ended)."""

    slug = "task-cancelled"
    title = "The task was cancelled: its request ended"


class PayloadTooLarge(LetheError):
    """The body exceeds the configured limit."""

    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class ValidationFailed(LetheError):
    """The input is well-formed HTTP but does not make sense; ``errors`` names each field."""

    status = 422
    slug = "validation"
    title = "Validation failed"

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail, extra={"errors": errors or []})


class ManifestInvalid(ValidationFailed):
    """A manifest does not decode or does not fit its target; ``errors`` names each key path."""

    slug = "manifest-invalid"
    title = "Invalid manifest"


class TargetRefused(ValidationFailed):
    """A manifest's connection names something the operator did not set up as a target."""

    slug = "target-connection-refused"
    title = "Target connection refused"

    def __init__(self, system: str, field: str, reason: str) -> None:
        super().__init__(f"system '{system}': {field}: {reason}", [field_error(f"body.{field}", reason)])


class DestinationRefused(ValidationFailed):
    """A webhook URL Lethe will not call: not https, or a host that is not a public address."""

    slug = "webhook-destination-refused"
    title = "Webhook destination refused"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", [field_error(field, reason)])


class IdempotencyConflict(ValidationFailed):
    """The Idempotency-Key was already used with a different body."""

    slug = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different body"


class UnsupportedMediaType(LetheError):
    """The body's ``Content-Type`` is not one the operation reads."""

    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class TooManyRequests(LetheError):
    """The caller is sending too much; retry later."""

    status = 429
    slug = "too-many-requests"
    title = "Too many requests"


def connection_dropped(error: BaseException) -> bool:
    """``error`` says a database connection was lost (and invalidated), not that a statement was
    refused: nothing of its transaction was applied, and the pool holds no dead connection."""
    return isinstance(error, DBAPIError) and error.connection_invalidated


class Unavailable(LetheError):
    """A dependency (service store, target database) cannot be reached right now."""

    status = 503
    slug = "unavailable"
    title = "Service unavailable"


class TargetUnavailable(Unavailable):
    """A target database of a system cannot be reached."""

    slug = "target-unavailable"
    title = "Target database unavailable"

    def __init__(self, system: str, reason: str) -> None:
        super().__init__(
            f"target database of system '{system}' is unavailable: {reason}",
            extra={"system": system},
        )
