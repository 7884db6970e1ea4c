"""Errors the engines raise on purpose: one base, no HTTP status (mapped in ``app.lib.problems``).

An engine is a library (it takes a connection and a manifest and returns results), so its errors
say what went wrong in the domain's terms, never which HTTP answer a caller gets: the worker
records them as a request's failure reason, and the HTTP edge maps each family to a problem type
in one table (:data:`app.lib.problems.ENGINE_PROBLEMS`). Messages name systems, tables, columns
and constraints only, never a value from a target.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ("EngineError", "TargetBlocks")


class EngineError(Exception):
    """Base of every error an engine raises on purpose.

    Attributes:
        detail: what went wrong (no personal data).
        system: the system it happened in, when known.
        extra: further facts for the caller (names and counts only).
        slug, title: the problem type and title an HTTP caller sees, for the families
            :data:`app.lib.problems.ENGINE_PROBLEMS` maps (others answer 500).
    """

    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self, detail: str, *, system: str | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}
        self.system = system if system is not None else self.extra.get("system")


class TargetBlocks(EngineError):
    """The target's data or constraints keep the operation from running as the manifest stands
    (an outside reference, a surrogate that cannot fit); nothing was changed."""

    slug = "conflict"
    title = "Conflict"
