"""HTTP bodies of the manifest registry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.lib.schema import BaseStruct
from app.manifest.issues import Issue

__all__ = (
    "IssueOut",
    "ManifestPage",
    "ManifestVersionOut",
    "ManifestVersionSummary",
    "Registration",
    "ValidationReport",
)


class IssueOut(BaseStruct):
    """One problem: ``severity`` ``error`` (blocks registration), ``risk``, or lint ``finding``."""

    kind: str
    severity: str
    path: str
    message: str
    table: str | None = None
    column: str | None = None
    acknowledged: bool = False

    @classmethod
    def of(cls, issue: Issue) -> IssueOut:
        """The HTTP form of a manifest issue."""
        return cls(
            kind=issue.kind,
            severity=issue.severity,
            path=issue.path,
            message=issue.message,
            table=issue.table,
            column=issue.column,
            acknowledged=issue.acknowledged,
        )


class ManifestVersionSummary(BaseStruct):
    """A registered version, without its document."""

    system: str
    version: int
    content_hash: str
    created_at: datetime
    created_by: str


class ManifestVersionOut(ManifestVersionSummary):
    """A registered version with its manifest (canonical JSON form)."""

    manifest: dict[str, Any]


class Registration(BaseStruct):
    """The outcome of ``POST /v1/manifests``: a new version, or the unchanged latest one."""

    created: bool
    version: ManifestVersionOut
    notice: str | None
    """One line for people when the manifest leaves personal-looking data uncovered or carries
    risks: that data survives erasure (null when there is nothing to say)."""
    risks: list[IssueOut]
    findings: list[IssueOut]


class ManifestPage(BaseStruct):
    """The latest version of each system, ordered by system; pass ``next_cursor`` for more."""

    items: list[ManifestVersionSummary]
    next_cursor: str | None = None


class ValidationReport(BaseStruct):
    """A re-check of a registered version against its live target."""

    system: str
    version: int
    valid: bool
    errors: list[IssueOut]
    risks: list[IssueOut]
    findings: list[IssueOut]
