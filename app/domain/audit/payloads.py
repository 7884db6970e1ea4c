"""What an audit event may say: identifiers, counts and booleans, never personal data."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from app.lib.errors import ValidationFailed, field_error

__all__ = ("IDENTIFIER", "Payload", "check_event_fields", "validate_payload")

IDENTIFIER = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
"""What a payload string may look like: a table, column, system, purpose or request id."""
SUBJECT_REF = re.compile(r"^[0-9a-f]{64}$")
MAX_PAYLOAD_DEPTH = 4

Payload = Mapping[str, Any]


def _check_value(value: object, path: str, depth: int) -> None:
    if isinstance(value, bool | int):
        return
    if isinstance(value, str):
        if not IDENTIFIER.fullmatch(value):
            raise _payload_error(path, "strings must be identifiers ([A-Za-z0-9_.:-], 1-128)")
        return
    if depth >= MAX_PAYLOAD_DEPTH:
        raise _payload_error(path, f"nested deeper than {MAX_PAYLOAD_DEPTH}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not IDENTIFIER.fullmatch(key):
                raise _payload_error(path, "keys must be identifiers")
            _check_value(item, f"{path}.{key}", depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_value(item, f"{path}[{index}]", depth + 1)
        return
    raise _payload_error(path, f"{type(value).__name__} is not allowed (counts, booleans, identifiers)")


def _payload_error(path: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"audit payload refused at {path}: {message}", [field_error(path, message)])


def validate_payload(payload: Payload) -> dict[str, Any]:
    """Refuse anything but ints, booleans and identifier-like strings (nested dicts/lists ok).

    An e-mail address, a name or free text cannot match :data:`IDENTIFIER` (no ``@``, no
    spaces), so personal data cannot enter the log through a payload.
    """
    _check_value(payload, "payload", 0)
    return msgspec.to_builtins(payload)  # type: ignore[no-any-return]


def check_event_fields(
    *, action: str, request_id: str | None, system: str | None, subject_ref: str | None
) -> None:
    """Refuse an event whose names are not identifiers or whose subject is not a reference."""
    for name, value in (("action", action), ("request_id", request_id), ("system", system)):
        if value is not None and not IDENTIFIER.fullmatch(value):
            raise ValidationFailed(
                f"audit {name} must be an identifier",
                [field_error(name, "must match [A-Za-z0-9_.:-]{1,128}")],
            )
    if subject_ref is not None and not SUBJECT_REF.fullmatch(subject_ref):
        raise ValidationFailed(
            "audit subject_ref must be a reference from subject_reference()",
            [field_error("subject_ref", "64 lowercase hex")],
        )
