"""Validation of ``scrub:`` declarations against the reflected schema."""

from __future__ import annotations

from app.manifest.issues import Issue
from app.manifest.model import Manifest
from app.manifest.schema import SchemaInfo

__all__ = ("scrub_issues",)

_DOCUMENT_TYPES = frozenset({"json", "jsonb"})


def scrub_issues(manifest: Manifest, schema: SchemaInfo) -> list[Issue]:
    """A scrubbed column must hold text or JSON, and each identity it names must be text.

    Mentions are found by a regular expression over text: an integer identity (``user_id``)
    would match every number in every row, so it is refused.
    """
    issues: list[Issue] = []
    subject = schema.tables.get(manifest.subject.table)
    for table, column, names in manifest.scrubbed_columns():
        path = f"tables.{table}.columns.{column}.scrub"
        info = schema.tables.get(table)
        found = info.columns.get(column) if info is not None else None
        if found is not None and found.affinity != "text" and found.type_name not in _DOCUMENT_TYPES:
            issues.append(
                Issue(
                    kind="scrub",
                    path=path,
                    table=table,
                    column=column,
                    message=f"column '{table}.{column}' is {found.type_name}: only text or JSON columns "
                    "can be scrubbed of mentions",
                )
            )
        for name in names:
            identity_column = manifest.subject.identity(name).column
            held = subject.columns.get(identity_column) if subject is not None else None
            if held is not None and held.affinity != "text":
                issues.append(
                    Issue(
                        kind="scrub",
                        path=path,
                        table=table,
                        column=column,
                        message=f"identity '{name}' ({manifest.subject.table}.{identity_column}) is "
                        f"{held.type_name}: only text identities can be scrubbed from "
                        f"'{table}.{column}' (a number would match unrelated text)",
                    )
                )
    return issues
