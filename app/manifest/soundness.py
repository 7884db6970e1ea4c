"""Checks that a manifest cannot quietly erase the wrong rows: keys, identities, hop types, overlaps."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import combinations

from app.manifest.durations import parse_duration
from app.manifest.graph import SubjectGraph
from app.manifest.issues import Issue
from app.manifest.links import Step
from app.manifest.model import CAST_TYPES, Manifest, Retention, RetentionPolicy, TableSpec
from app.manifest.schema import ColumnInfo, SchemaInfo, TableInfo

__all__ = ("CAST_FAMILIES", "soundness_issues", "type_family")

CAST_FAMILIES: dict[str, str] = {
    "text": "text",
    "varchar": "text",
    "integer": "number",
    "bigint": "number",
    "numeric": "number",
    "uuid": "uuid",
    "date": "date",
    "timestamp": "datetime",
}
"""What each ``cast:`` type compares as (every name of ``CastType`` is listed)."""
assert set(CAST_FAMILIES) == set(CAST_TYPES)  # noqa: S101 - one list of cast names

_UNKNOWN_TYPES = frozenset({"null", "nulltype"})
_REFERENCE = datetime(2001, 3, 31, tzinfo=UTC)
"""Any fixed instant: durations are compared by the cut-off each gives before it."""


def soundness_issues(manifest: Manifest, schema: SchemaInfo, graph: SubjectGraph | None) -> list[Issue]:
    """Subject key and identities that may match several people, retention policies purging
    sooner than a declared retention, hops joining different types,
    key columns marked rectifiable, and links of a shared table owning the same column."""
    issues = _subject_key_issues(manifest, schema) + _identity_issues(manifest, schema)
    for name, spec in manifest.tables.items():
        table = schema.tables.get(name)
        if table is not None:
            issues += _rectifiable_key_issues(manifest, name, spec, table, schema)
        issues += _overlapping_link_issues(name, spec)
    issues += _hop_type_issues(manifest, schema, graph)
    for index, policy in enumerate(manifest.retention_policies):
        issues += _retention_conflicts(index, policy, manifest.tables.get(policy.table, TableSpec()))
    return issues


def type_family(column: ColumnInfo) -> str | None:
    """What a column compares as: ``number``, ``text``, ``uuid``, ``date``... (None: unknown)."""
    if column.affinity in ("integer", "number"):
        return "number"
    if column.affinity != "other":
        return column.affinity
    return None if column.type_name in _UNKNOWN_TYPES else column.type_name


def _described(table: TableInfo, columns: tuple[str, ...]) -> str:
    return f"{table.name}({', '.join(columns)})"


def _subject_key_issues(manifest: Manifest, schema: SchemaInfo) -> list[Issue]:
    subject = manifest.subject
    table = schema.tables.get(subject.table)
    key = subject.key_columns
    if table is None or any(c not in table.columns for c in key):
        return []  # reported as unknown table/column
    if table.is_unique(key):
        nullable = [c for c in key if table.columns[c].nullable]
        if not nullable:
            return []
        problem = f"column '{table.name}.{nullable[0]}' of the subject key allows NULL"
    else:
        problem = (
            f"the subject key {_described(table, key)} is neither the primary key nor a UNIQUE "
            "column set, so one request could erase every person sharing the value"
        )
    return [
        Issue(
            kind="subject_key",
            path="subject.key",
            table=table.name,
            column=key[0],
            message=f"{problem}; the subject key must be the primary key or a UNIQUE NOT NULL column",
        )
    ]


def _identity_issues(manifest: Manifest, schema: SchemaInfo) -> list[Issue]:
    subject = manifest.subject
    table = schema.tables.get(subject.table)
    if table is None:
        return []
    issues: list[Issue] = []
    for name in subject.identities:
        identity = subject.identity(name)
        if identity.ambiguous == "refuse" or identity.column not in table.columns:
            continue
        scoped = (
            (identity.column,)
            if identity.tenant_column is None
            else (identity.tenant_column, identity.column)
        )
        if table.column_is_unique(identity.column) or table.is_unique(scoped):
            continue
        issues.append(
            Issue(
                kind="ambiguous_identity",
                path=f"subject.identities.{name}",
                table=table.name,
                column=identity.column,
                message=f"identity '{name}' maps to '{table.name}.{identity.column}', which the "
                "database does not keep unique, so a request could match several people: map it "
                f"to a UNIQUE column, or write it as `{{column: {identity.column}, ambiguous: "
                "refuse}` (a request matching several subjects then fails)",
            )
        )
    return issues


def _key_role(manifest: Manifest, name: str, column: str, table: TableInfo, schema: SchemaInfo) -> str | None:
    """Why ``column`` is a key (primary key, subject key, foreign key or referenced by one)."""
    if column in table.primary_key:
        return "part of the primary key"
    if name == manifest.subject.table and column in manifest.subject.key_columns:
        return "part of the subject key"
    for fk in table.foreign_keys:
        if column in fk.columns:
            return f"part of foreign key {fk.label}"
    for fk in schema.references_to(name):
        if column in fk.referred_columns:
            return f"referenced by foreign key {fk.label}"
    return None


def _rectifiable_key_issues(
    manifest: Manifest, name: str, spec: TableSpec, table: TableInfo, schema: SchemaInfo
) -> list[Issue]:
    issues: list[Issue] = []
    for column, column_spec in spec.columns.items():
        role = _key_role(manifest, name, column, table, schema) if column in table.columns else None
        if column_spec.rectifiable and role is not None:
            issues.append(
                Issue(
                    kind="rectifiable_key",
                    path=f"tables.{name}.columns.{column}.rectifiable",
                    table=name,
                    column=column,
                    message=f"column '{name}.{column}' is {role}, so it cannot be rectifiable: "
                    "changing it would break the rows that join on it",
                )
            )
    return issues


def _overlapping_link_issues(name: str, spec: TableSpec) -> list[Issue]:
    issues: list[Issue] = []
    for (first, one), (second, other) in combinations((spec.links or {}).items(), 2):
        shared = [c for c in one.columns if c in other.columns]
        if shared:
            issues.append(
                Issue(
                    kind="overlapping_links",
                    path=f"tables.{name}.links.{second}.columns",
                    table=name,
                    column=shared[0],
                    message=f"links '{first}' and '{second}' of table '{name}' both own column(s) "
                    f"{', '.join(shared)}: erasing either person would erase the other's value; "
                    "give each column to one link",
                )
            )
    return issues


def _written_steps(manifest: Manifest, schema: SchemaInfo) -> list[tuple[Step, str]]:
    """Every hop the manifest writes, as a step, whether or not its link resolves otherwise."""
    found: list[tuple[Step, str]] = []
    for table, spec in manifest.tables.items():
        links = (
            {"link": spec.link}
            if spec.link
            else {f"links.{n}": link for n, link in (spec.links or {}).items()}
        )
        for where, link in links.items():
            current = table
            for index, hop in enumerate(link.path):
                target = schema.tables.get(hop.to)
                if target is None:
                    break
                if hop.to_columns is not None:
                    to_columns = tuple(hop.to_columns)
                elif hop.to == manifest.subject.table:
                    to_columns = manifest.subject.key_columns
                else:
                    to_columns = target.primary_key
                step = Step(current, tuple(hop.from_columns), hop.to, to_columns, cast=hop.cast)
                found.append((step, f"tables.{table}.{where}.path[{index}]"))
                current = hop.to
    return found


def _step_locations(
    manifest: Manifest, schema: SchemaInfo, graph: SubjectGraph | None
) -> list[tuple[Step, str]]:
    """Every distinct hop with the manifest key path that writes it (written hops first, then
    those derived from foreign keys)."""
    located: dict[tuple[object, ...], tuple[Step, str]] = {}
    derived = [
        (step, f"tables.{path.table}.link")
        for paths in (graph.paths.values() if graph else ())
        for path in paths
        if path.derived
        for step in path.steps
    ]
    for step, where in _written_steps(manifest, schema) + derived:
        key = (step.from_table, step.from_columns, step.to_table, step.to_columns, step.cast)
        located.setdefault(key, (step, where))
    return list(located.values())


def _hop_type_issues(manifest: Manifest, schema: SchemaInfo, graph: SubjectGraph | None) -> list[Issue]:
    issues: list[Issue] = []
    for step, where in _step_locations(manifest, schema, graph):
        source, target = schema.tables.get(step.from_table), schema.tables.get(step.to_table)
        if source is None or target is None or len(step.from_columns) != len(step.to_columns):
            continue
        for from_column, to_column in zip(step.from_columns, step.to_columns, strict=True):
            if from_column not in source.columns or to_column not in target.columns:
                break  # reported as an unknown column
            issue = _pair_issue(step, where, source.columns[from_column], target.columns[to_column])
            if issue is not None:
                issues.append(issue)
                break
    return issues


def _pair_issue(step: Step, where: str, source: ColumnInfo, target: ColumnInfo) -> Issue | None:
    """A hop comparing ``source`` with ``target`` of a different type (after its ``cast``)."""
    compared = CAST_FAMILIES[step.cast] if step.cast else type_family(source)
    expected = type_family(target)
    if compared is None or expected is None or compared == expected:
        return None
    left = f"'{step.from_table}.{source.name}' ({source.type_name})"
    right = f"'{step.to_table}.{target.name}' ({target.type_name})"
    if step.cast:
        problem = f"casts {left} to {step.cast}, which still differs from {right}"
    else:
        problem = f"compares {left} with {right}"
    return Issue(
        kind="type_mismatch",
        path=where,
        table=step.from_table,
        column=source.name,
        message=f"hop {step} {problem}: rows would never match (or fail at run time); join "
        f"columns of the same type, or add `cast:` to the hop (one of {', '.join(CAST_TYPES)})",
    )


def _declared_retentions(policy: RetentionPolicy, spec: TableSpec) -> list[tuple[str, Retention]]:
    """Retentions of the table the policy's action would cut short (with their key path)."""
    where = f"tables.{policy.table}"
    found = [(f"{where}.retention", spec.retention)] if spec.retention else []
    for column, column_spec in spec.columns.items():
        touched = policy.action != "anonymize" or column_spec.strategy != "retain"
        if column_spec.retention is not None and touched:
            found.append((f"{where}.columns.{column}.retention", column_spec.retention))
    return found


def _retention_conflicts(index: int, policy: RetentionPolicy, spec: TableSpec) -> list[Issue]:
    """A policy purging rows sooner than the manifest says they are kept: refused unless the
    policy gives a ``retention_override`` reason (then a risk, and the reason is audited)."""
    if not policy.enabled:
        return []
    purge = parse_duration(policy.older_than).before(_REFERENCE)
    issues: list[Issue] = []
    for declared_at, retention in _declared_retentions(policy, spec):
        if parse_duration(retention.duration).before(_REFERENCE) >= purge:
            continue
        column = declared_at.split(".")[3] if ".columns." in declared_at else None
        problem = (
            f"retention policy '{policy.name}' purges '{policy.table}' rows older than "
            f"{policy.older_than} ({policy.action}), sooner than the retention of "
            f"{retention.duration} declared at {declared_at}"
        )
        if policy.retention_override:
            message = f"{problem}; allowed by its retention_override"
        else:
            message = f"{problem}; lengthen older_than, or give the policy a `retention_override` reason"
        issues.append(
            Issue(
                kind="retention_conflict",
                severity="risk" if policy.retention_override else "error",
                path=f"retention_policies[{index}].older_than",
                table=policy.table,
                column=column,
                message=message,
            )
        )
    return issues
