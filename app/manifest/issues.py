"""Problems found in a manifest: errors that block registration, risks, and lint findings."""

from __future__ import annotations

from typing import Literal

import msgspec

from app.lib.errors import ManifestInvalid, field_error

__all__ = ("Issue", "IssueKind", "Severity", "raise_for_errors", "strict")

Severity = Literal["error", "risk", "finding"]
IssueKind = Literal[
    "syntax",
    "structure",
    "unknown_table",
    "unknown_column",
    "no_link",
    "ambiguous_link",
    "link_not_reaching_subject",
    "cycle",
    "survivor_through_deleted",
    "outside_reference",
    "not_null_delete",
    "unique_constant",
    "surrogate_too_long",
    "surrogate_type",
    "surrogate_key",
    "check_violation",
    "retain_without_basis",
    "key_column",
    "retention_policy",
    "personal_table",
    "personal_column",
    "duplicate_key",
    "ambiguous_surrogate",
    "subject_key",
    "ambiguous_identity",
    "link_ignores_foreign_key",
    "unbacked_link",
    "type_mismatch",
    "retention_conflict",
    "rectifiable_key",
    "overlapping_links",
    "exported_credential",
    "scrub",
]


class Issue(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One problem, located by the manifest key path (``tables.orders.columns.note.strategy``).

    ``kind`` is stable and safe to branch on; ``message`` is for people and names tables and
    columns only, never values. ``severity``: ``error`` blocks registration, ``risk`` is reported
    (an unmanaged foreign key into deleted rows), ``finding`` is a completeness lint result.
    """

    kind: IssueKind
    path: str
    message: str
    severity: Severity = "error"
    table: str | None = None
    column: str | None = None
    acknowledged: bool = False
    """Lint findings only: an ``ignore:`` entry of the manifest covers it."""

    def as_field_error(self) -> dict[str, str]:
        """The ``{"field", "message"}`` form used in problem+json ``errors``."""
        return field_error(self.path, self.message)


def raise_for_errors(issues: list[Issue], what: str = "manifest") -> None:
    """Raise :class:`ManifestInvalid` listing every issue of severity ``error``, if any."""
    errors = [i for i in issues if i.severity == "error"]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ManifestInvalid(
            f"invalid {what}: {first.path}: {first.message}{more}",
            errors=[i.as_field_error() for i in errors],
        )


def strict(issues: list[Issue]) -> list[Issue]:
    """Strict mode: every lint finding no ``ignore:`` entry acknowledges becomes an error (an
    uncovered personal-looking column then refuses registration); other issues are unchanged."""
    return [
        msgspec.structs.replace(
            issue,
            severity="error",
            message=f"{issue.message} (strict mode: cover it in the manifest or acknowledge it "
            "under `ignore:` with a reason)",
        )
        if issue.severity == "finding" and not issue.acknowledged
        else issue
        for issue in issues
    ]
