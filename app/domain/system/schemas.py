"""Bodies of the health and readiness probes."""

from __future__ import annotations

from app.lib.schema import BaseStruct

__all__ = ("Health", "Readiness")


class Health(BaseStruct):
    """The process is alive."""

    status: str


class Readiness(BaseStruct):
    """Whether this replica can serve: store reachable and migrated to the shipped head."""

    status: str
    store: str
    revision: str | None
    head: str | None
    detail: str | None = None
    artifacts: str | None = None
    """``writable`` or ``unavailable`` (the artifact store: filesystem directory or S3 bucket);
    None when the store was not reached first."""
