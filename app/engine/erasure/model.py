"""What erasure plans and reports: options, the plan of a system, the outcome of execution."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from app.engine.errors import TargetBlocks
from app.engine.scrub import ScrubPlan

__all__ = (
    "ErasureBlocked",
    "ErasureOptions",
    "ErasureOutcome",
    "OutsideReference",
    "SaveCursor",
    "Strategy",
    "SystemPlan",
    "TablePlan",
    "plan_document",
)


Strategy = Literal["delete", "anonymize", "retain"]
SaveCursor = Callable[[dict[str, Any]], Awaitable[None]]
"""Persists the batch cursor (the caller fences the write with its attempt number)."""


class ErasureBlocked(TargetBlocks):
    """A system cannot be erased as the manifest stands (an outside reference, a surrogate that
    cannot fit); nothing was changed in that system."""

    slug = "erasure-blocked"
    title = "Erasure blocked"


@dataclass(frozen=True)
class ErasureOptions:
    """Knobs of one erasure run (from settings, overridable in tests and benchmarks)."""

    secret: str | None = None
    """Service secret keying the ``hash`` surrogate (the audit key)."""
    batch_threshold: int = 50_000
    batch_size: int = 5_000
    tenant: str | None = None
    batch_delay_seconds: float = 0.0
    """Pause after each committed batch (crash tests only)."""


@dataclass(frozen=True)
class OutsideReference:
    """A foreign key from rows erasure keeps into rows erasure deletes."""

    constraint: str
    referencing_table: str
    referencing_columns: tuple[str, ...]
    referenced_table: str
    rows: int
    action: str
    """``fail`` (blocks the system), ``set_null``, ``delete`` or ``anonymize``."""


@dataclass
class TablePlan:
    """What erasure does to one table."""

    table: str
    strategy: Strategy
    rows: int
    links: list[str]
    legal_basis: str | None = None
    retention: str | None = None
    changed_columns: dict[str, str] = field(default_factory=dict)
    """column -> ``null`` or the surrogate name (anonymize/retain tables)."""
    retained_columns: list[str] = field(default_factory=list)
    sql: list[str] = field(default_factory=list)
    batched: bool = False
    outside_references: list[OutsideReference] = field(default_factory=list)


@dataclass
class SystemPlan:
    """The plan of one system; ``blocked`` explains why execution would fail (or None)."""

    system: str
    found: bool
    tables: list[TablePlan] = field(default_factory=list)
    blocked: str | None = None
    scrubs: list[ScrubPlan] = field(default_factory=list)
    """Columns whose rows (anyone's) are scrubbed of the subject's identity values."""

    @property
    def rows(self) -> int:
        """Rows affected in total."""
        return sum(t.rows for t in self.tables)


@dataclass
class ErasureOutcome:
    """What execution did in one system: counts per table and the verification result."""

    system: str
    found: bool
    subject_key: tuple[Any, ...] | None = None
    deleted: dict[str, int] = field(default_factory=dict)
    anonymized: dict[str, int] = field(default_factory=dict)
    outside_references: dict[str, int] = field(default_factory=dict)
    verified_rows_left: dict[str, int] = field(default_factory=dict)
    verified_values_left: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    scrubbed: dict[str, int] = field(default_factory=dict)
    """Rows whose mentions of the subject were replaced, per ``table.column``."""
    mentions_left: dict[str, int] = field(default_factory=dict)
    """Rows still mentioning the subject after scrubbing, per ``table.column``."""
    independent_left: dict[str, int] = field(default_factory=dict)
    """Rows reflected evidence still ties to the subject, per table (independent verification)."""

    @property
    def verified(self) -> bool:
        """True when no subject row, no original value and no mention was found after execution,
        along the manifest's paths and by the independent check."""
        return not any(
            any(counts.values())
            for counts in (
                self.verified_rows_left,
                self.verified_values_left,
                self.mentions_left,
                self.independent_left,
            )
        )

    def audit_payload(self) -> dict[str, Any]:
        """Counts, table and column names only (safe for the audit log)."""
        return {
            "found": self.found,
            "deleted": dict(self.deleted),
            "anonymized": dict(self.anonymized),
            "outside_references": dict(self.outside_references),
            "scrubbed": dict(self.scrubbed),
            "verification": {
                "rows_left": sum(self.verified_rows_left.values()),
                "values_left": sum(self.verified_values_left.values()),
                "mentions_left": sum(self.mentions_left.values()),
                "independent_rows_left": sum(self.independent_left.values()),
                "verified": self.verified,
            },
            "batches": self.batches,
        }


def plan_document(plan: SystemPlan) -> dict[str, Any]:
    """The plan as plain JSON data (what the store records and the API returns)."""
    document = asdict(plan)
    document["rows"] = plan.rows
    return document
