"""Base msgspec structs for every HTTP body, and the problem+json document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = ("BaseStruct", "BodyExample", "InputStruct", "Problem", "ProblemFieldError")


class BaseStruct(msgspec.Struct, kw_only=True, omit_defaults=False):
    """Output bodies."""


class InputStruct(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Input bodies: unknown fields are refused so a typo is a 422, not a silent no-op."""


class ProblemFieldError(BaseStruct):
    """One invalid input, named by its location (``body.kind``, ``query.limit``)."""

    field: str
    message: str


class Problem(BaseStruct):
    """RFC 9457 problem details; ``type`` is stable and safe to branch on."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ProblemFieldError] | None = None
    extra: dict[str, Any] | None = None


@dataclass(frozen=True)
class BodyExample:
    """A realistic body, shown in the OpenAPI document wherever its struct is a request or answer.

    Built from the struct itself so that a renamed or retyped field breaks the example at once.
    """

    name: str
    summary: str
    value: msgspec.Struct
