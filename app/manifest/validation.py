"""Validate a manifest against a reflected schema: every error and risk, with a precise message."""

from __future__ import annotations

from app.manifest.graph import SubjectGraph, analyse_graph
from app.manifest.issues import Issue
from app.manifest.model import ColumnSpec, Manifest, RetentionPolicy, Surrogate, TableSpec
from app.manifest.schema import ColumnInfo, SchemaInfo, TableInfo
from app.manifest.scrub_checks import scrub_issues
from app.manifest.soundness import soundness_issues
from app.manifest.surrogate_rules import default_surrogate, surrogate_problem

__all__ = ("resolve_surrogate", "validate")


def resolve_surrogate(spec: ColumnSpec, column: ColumnInfo, table: TableInfo) -> Surrogate:
    """The surrogate erasure writes into ``column``: NULL for strategy ``delete``, else the
    manifest's, else the type-aware default (the one function erasure calls too)."""
    if spec.strategy == "delete":
        return Surrogate(kind="null")
    return spec.surrogate_spec or default_surrogate(column, unique=table.column_is_unique(column.name))


def validate(manifest: Manifest, schema: SchemaInfo) -> tuple[SubjectGraph | None, list[Issue]]:
    """Check ``manifest`` against the reflected ``schema``.

    Returns the subject graph (None when links cannot be resolved) and every issue: errors
    (unknown table/column, link problems, cycle, a surviving table whose path runs through a
    row-deleted table, a strategy the column cannot honour, retain without legal basis) and
    risks (a foreign key from outside the subject's data into a row-deleted table).
    """
    graph, issues = analyse_graph(manifest, schema)
    issues += _subject_issues(manifest, schema)
    for name, spec in manifest.tables.items():
        table = schema.tables.get(name)
        if table is not None:
            issues += _table_issues(name, spec, table)
    if graph is not None:
        issues += _survivor_issues(manifest, graph)
    issues += _outside_reference_issues(manifest, schema)
    issues += scrub_issues(manifest, schema)
    for index, policy in enumerate(manifest.retention_policies):
        issues += _policy_issues(index, policy, manifest, schema)
    issues += soundness_issues(manifest, schema, graph)
    return graph, issues


def _missing_column(table: TableInfo, column: str | None, path: str) -> list[Issue]:
    if column is None or column in table.columns:
        return []
    return [
        Issue(
            kind="unknown_column",
            path=path,
            table=table.name,
            column=column,
            message=f"column '{table.name}.{column}' does not exist",
        )
    ]


def _subject_issues(manifest: Manifest, schema: SchemaInfo) -> list[Issue]:
    subject = manifest.subject
    table = schema.tables.get(subject.table)
    if table is None:
        return []  # reported by the graph
    issues: list[Issue] = []
    for column in subject.key_columns:
        issues += _missing_column(table, column, "subject.key")
    issues += _missing_column(table, subject.tenant_column, "subject.tenant_column")
    for name in subject.identities:
        identity = subject.identity(name)
        issues += _missing_column(table, identity.column, f"subject.identities.{name}")
        issues += _missing_column(table, identity.tenant_column, f"subject.identities.{name}")
    return issues


def _table_issues(name: str, spec: TableSpec, table: TableInfo) -> list[Issue]:
    where = f"tables.{name}"
    issues: list[Issue] = []
    if spec.strategy == "retain" and spec.retention is None:
        issues.append(
            Issue(
                kind="retain_without_basis",
                path=f"{where}.retention",
                table=name,
                message=f"table '{name}' is retained but names no retention (legal_basis and duration)",
            )
        )
    for link_name, link in (spec.links or {}).items():
        for owned in link.columns:
            issues += _missing_column(table, owned, f"{where}.links.{link_name}.columns")
    for column_name, column_spec in spec.columns.items():
        path = f"{where}.columns.{column_name}"
        column = table.columns.get(column_name)
        if column is None:
            issues += _missing_column(table, column_name, path)
            continue
        issues += _column_issues(spec, column_spec, column, table, path)
    return issues


def _column_issues(
    spec: TableSpec, column_spec: ColumnSpec, column: ColumnInfo, table: TableInfo, path: str
) -> list[Issue]:
    """Whether erasure can honour the column's strategy given its type and constraints."""
    name = f"{table.name}.{column.name}"
    if column_spec.strategy == "retain":
        if column_spec.retention is None and spec.retention is None:
            return [
                Issue(
                    kind="retain_without_basis",
                    path=f"{path}.retention",
                    table=table.name,
                    column=column.name,
                    message=f"column '{name}' is retained but names no retention (legal_basis and duration)",
                )
            ]
        return []
    if spec.strategy == "delete" and spec.on_outside_reference != "anonymize":
        return []  # the rows go; column strategies never run
    surrogate = resolve_surrogate(column_spec, column, table)
    key_issue = _key_column_issue(surrogate, column, table, path)
    if key_issue is not None:
        return [key_issue]
    return _surrogate_issues(surrogate, column, table, path, column_spec.strategy)


def _key_column_issue(surrogate: Surrogate, column: ColumnInfo, table: TableInfo, path: str) -> Issue | None:
    """A primary key cannot be rewritten, and a foreign key can only be cleared (NULL)."""
    name = f"{table.name}.{column.name}"
    if column.primary_key:
        return Issue(
            kind="key_column",
            path=f"{path}.strategy",
            table=table.name,
            column=column.name,
            message=f"column '{name}' is part of the primary key and cannot be erased in place; "
            "delete the rows instead",
        )
    references = [fk for fk in table.foreign_keys if column.name in fk.columns]
    if references and surrogate.kind != "null":
        return Issue(
            kind="key_column",
            path=f"{path}.strategy",
            table=table.name,
            column=column.name,
            message=f"column '{name}' is part of foreign key {references[0].label}; a surrogate "
            "would point at another row: use strategy delete (NULL) or delete the rows",
        )
    return None


def _surrogate_issues(
    surrogate: Surrogate, column: ColumnInfo, table: TableInfo, path: str, strategy: str
) -> list[Issue]:
    key = tuple(table.columns[c] for c in table.primary_key if c in table.columns)
    problem = surrogate_problem(surrogate, column, unique=table.column_is_unique(column.name), key=key)
    if problem is None:
        return []
    name = f"{table.name}.{column.name}"
    message = problem.message
    if problem.kind == "not_null_delete":
        what = "deleting its value (NULL)" if strategy == "delete" else "the NULL surrogate"
        message = f"is NOT NULL, so {what} cannot be written; anonymize it with a non-null surrogate"
    return [
        Issue(
            kind=problem.kind,  # type: ignore[arg-type]
            path=f"{path}.strategy" if problem.kind == "not_null_delete" else f"{path}.surrogate",
            table=table.name,
            column=column.name,
            message=f"column '{name}' {message}",
        )
    ]


def _survivor_issues(manifest: Manifest, graph: SubjectGraph) -> list[Issue]:
    """Rows that survive erasure must not hang off rows that erasure deletes."""
    issues: list[Issue] = []
    deleted = set(graph.deletion_order)
    for table, paths in graph.paths.items():
        strategy = manifest.tables.get(table, TableSpec()).strategy
        if strategy == "delete":
            continue
        for path in paths:
            through = [t for t in path.tables if t in deleted and t != table]
            if through:
                where = (
                    f"tables.{table}.link"
                    if path.link in ("default", "subject")
                    else f"tables.{table}.links.{path.link}"
                )
                issues.append(
                    Issue(
                        kind="survivor_through_deleted",
                        path=where,
                        table=table,
                        message=f"table '{table}' survives erasure (strategy {strategy}) but its "
                        f"path to the subject runs through '{through[0]}', whose rows are deleted; "
                        f"delete '{table}' rows too or keep '{through[0]}' rows",
                    )
                )
    return issues


def _outside_reference_issues(manifest: Manifest, schema: SchemaInfo) -> list[Issue]:
    """Foreign keys into row-deleted tables from rows erasure does not delete: risks."""
    deleted = {t for t, s in manifest.tables.items() if s.strategy == "delete" and t in schema.tables}
    issues: list[Issue] = []
    for target in sorted(deleted):
        spec = manifest.tables[target]
        for fk in schema.references_to(target):
            referencing = manifest.tables.get(fk.table)
            if fk.table != target and referencing is not None and referencing.strategy == "delete":
                continue  # deleted first (deletion order)
            issues += _reference_issue(
                fk.label,
                target,
                spec,
                fk.table,
                fk.columns,
                schema,
                managed=referencing is not None,
            )
    return issues


def _reference_issue(
    label: str,
    target: str,
    spec: TableSpec,
    table: str,
    columns: tuple[str, ...],
    schema: SchemaInfo,
    *,
    managed: bool,
) -> list[Issue]:
    where = f"tables.{target}.on_outside_reference"
    if spec.on_outside_reference == "set_null":
        info = schema.tables[table]
        not_null = [c for c in columns if not info.columns[c].nullable]
        if not_null:
            return [
                Issue(
                    kind="not_null_delete",
                    path=where,
                    table=table,
                    column=not_null[0],
                    message=f"on_outside_reference: set_null cannot clear foreign key {label}: "
                    f"column '{table}.{not_null[0]}' is NOT NULL",
                )
            ]
        return []
    if spec.on_outside_reference != "fail":
        return []
    who = "surviving table" if managed else "unmanaged table"
    return [
        Issue(
            kind="outside_reference",
            severity="risk",
            path=where,
            table=table,
            message=f"foreign key {label} from {who} '{table}' references rows that erasure "
            f"deletes from '{target}'; erasure fails when such a row exists (set "
            "on_outside_reference, or manage the table)",
        )
    ]


def _policy_issues(
    index: int, policy: RetentionPolicy, manifest: Manifest, schema: SchemaInfo
) -> list[Issue]:
    where = f"retention_policies[{index}]"
    table = schema.tables.get(policy.table)
    if table is None:
        return [
            Issue(
                kind="unknown_table",
                path=f"{where}.table",
                table=policy.table,
                message=f"retention policy '{policy.name}' names table '{policy.table}', "
                "which does not exist",
            )
        ]
    issues = _missing_column(table, policy.age_column, f"{where}.age_column")
    issues += _missing_column(table, policy.soft_delete_column, f"{where}.soft_delete_column")
    for number, condition in enumerate(policy.filters):
        issues += _missing_column(table, condition.column, f"{where}.filters[{number}].column")
    age = table.columns.get(policy.age_column)
    if age is not None and age.affinity not in ("date", "datetime", "text"):
        issues.append(
            Issue(
                kind="retention_policy",
                path=f"{where}.age_column",
                table=table.name,
                column=age.name,
                message=f"age column '{table.name}.{age.name}' is not a date or time "
                f"column ({age.type_name})",
            )
        )
    if policy.action == "anonymize" and not manifest.tables.get(policy.table, TableSpec()).columns:
        issues.append(
            Issue(
                kind="retention_policy",
                path=f"{where}.action",
                table=table.name,
                message=f"retention policy '{policy.name}' anonymizes '{table.name}' "
                "but the manifest lists none of its columns",
            )
        )
    return issues
