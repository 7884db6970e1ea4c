"""Request identities checked against the type of the column each one is looked up in."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from app.domain.requests.catalog import RegisteredManifest
from app.lib.errors import ValidationFailed, field_error

__all__ = ("check_identity_values",)

INTEGER_RANGES = {
    "smallint": 2**15,
    "int2": 2**15,
    "tinyint": 2**7,
    "mediumint": 2**23,
    "integer": 2**31,
    "int": 2**31,
    "int4": 2**31,
    "serial": 2**31,
}
"""Bound of the signed integer types (``-bound <= value < bound``); any other integer is 64-bit."""
_BIGINT = 2**63


def _problem(value: str, column: Mapping[str, Any]) -> str | None:
    affinity, type_name = column.get("affinity"), str(column.get("type_name") or "")
    if affinity == "integer":
        text = value.strip()
        if not text.lstrip("+-").isdigit() or len(text) > 20:
            return f"must be an integer ({type_name} column)"
        bound = INTEGER_RANGES.get(type_name, _BIGINT)
        if not -bound <= int(text) < bound:
            return f"out of the range of the {type_name} column"
    elif type_name == "uuid":
        try:
            uuid.UUID(value)
        except ValueError:
            return "must be a UUID (uuid column)"
    elif affinity == "text" and isinstance(column.get("length"), int) and len(value) > column["length"]:
        return f"longer than the column's {column['length']} characters"
    return None


def check_identity_values(identities: Mapping[str, str], manifests: Sequence[RegisteredManifest]) -> None:
    """Refuse identities that cannot match any row: control characters, or a value the column's
    type cannot hold (an id out of an integer column's range) in a selected system.

    Raises:
        ValidationFailed: 422 naming ``body.identities.<name>`` for each bad identity.
    """
    errors: dict[str, str] = {}
    for name, value in identities.items():
        if any(ord(c) < 32 and c not in "\t" for c in value):
            errors[name] = "contains a control character (NUL, newline, ...)"
            continue
        for registered in manifests:
            column = (registered.identity_columns or {}).get(name)
            problem = _problem(value, column) if column else None
            if problem is not None:
                errors[name] = f"{problem} in system '{registered.system}'"
                break
    if errors:
        raise ValidationFailed(
            "identities that cannot match: " + ", ".join(sorted(errors)),
            [field_error(f"body.identities.{name}", message) for name, message in sorted(errors.items())],
        )
