"""Independent post-erasure verification: evidence of the subject that does not come from the plan.

The erasure's own checks count rows along the manifest's paths, so a wrong path (a link written
from the wrong column and accepted as ``logical: true``) is verified along the same wrong path and
passes. This check shares none of the paths' assumptions. It looks, in every table the manifest
deletes or anonymizes, for rows that still point at the subject by *reflected* evidence:

- a declared foreign key into the subject table's key (or into one of its identity columns)
  holding the subject's key (or identity value). When the manifest's links start from some of
  those keys, they are the evidence (a ``moderator_id`` next to an ``author_id`` is not
  ownership). When a link starts with a logical hop (no declared key backs it), every such key
  is: a logical hop next to a declared key into the subject is exactly the wrong-column mistake.
  A link that starts by following another declared key (``order_items.order_id``) is trusted;
- a column named like one of the subject table's identity columns (``email``) holding the
  subject's value under the identity's case rule (of the subject table: the identity columns the
  manifest changes).

In a row-deleted table no such row may remain. In a kept table (anonymized, retained with changed
columns, or deleted rows kept for outside references) such a row must hold the surrogate in every
column the manifest changes for it (every surrogate, ``hash`` too, is derived from the row key or
constant). A row found is a mismatch: the erasure fails and the system's transaction rolls back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, false, or_
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.erasure_sql import ColumnChange, count_statement, value_differs
from app.engine.subjects import identity_condition
from app.manifest.graph import SubjectPath
from app.manifest.model import Manifest, TableSpec
from app.manifest.schema import ForeignKeyInfo, SchemaInfo

__all__ = ("CheckedTable", "Evidence", "evidence", "independent_rows_left", "rows_left_conditions")


@dataclass(frozen=True)
class CheckedTable:
    """One table as erasure treats it: its strategy and, per link, the columns it changes."""

    table: str
    strategy: str
    keeps_rows: bool
    """Rows of a deleted table may be kept (``on_outside_reference: anonymize``)."""
    links: tuple[tuple[SubjectPath, tuple[ColumnChange, ...]], ...]

    @property
    def deletes(self) -> bool:
        """Whether every subject row of the table must be gone."""
        return self.strategy == "delete" and not self.keeps_rows


@dataclass(frozen=True)
class Evidence:
    """Rows pointing at the subject by reflection, and the changes those rows must show."""

    label: str
    condition: ColumnElement[bool]
    changes: tuple[ColumnChange, ...]


def _changes_for(checked: CheckedTable, fk: ForeignKeyInfo, subject_table: str) -> tuple[ColumnChange, ...]:
    """The changes a row reached by ``fk`` must show: its link's, else those of every link."""
    if len(checked.links) == 1:
        return checked.links[0][1]
    for path, changes in checked.links:
        first = path.steps[0] if path.steps else None
        if first is not None and first.to_table == subject_table and first.from_columns == fk.columns:
            return changes
    common = set.intersection(*({c.column for c in changes} for _, changes in checked.links))
    return tuple(c for c in checked.links[0][1] if c.column in common)


def _subject_keys(
    schema: SchemaInfo, manifest: Manifest, checked: CheckedTable
) -> list[tuple[ForeignKeyInfo, str | None]]:
    """Declared keys of the table into the subject table: ``(fk, None)`` into the subject key,
    ``(fk, identity name)`` into an identity column."""
    subject = manifest.subject
    by_column = {subject.identity(n).column: n for n in sorted(subject.identities)}
    found: list[tuple[ForeignKeyInfo, str | None]] = []
    for fk in schema.tables[checked.table].foreign_keys:
        if fk.referred_table != subject.table or fk.table == subject.table:
            continue
        if set(fk.referred_columns) == set(subject.key_columns):
            found.append((fk, None))
        elif len(fk.referred_columns) == 1 and fk.referred_columns[0] in by_column:
            found.append((fk, by_column[fk.referred_columns[0]]))
    named = {p.steps[0].from_columns for p, _ in checked.links if p.steps}
    chosen = [(fk, n) for fk, n in found if fk.columns in named]
    logical = any(p.steps and p.steps[0].kind == "logical" for p, _ in checked.links)
    return chosen or (found if logical else [])


def evidence(
    schema: SchemaInfo,
    manifest: Manifest,
    table: Table,
    checked: CheckedTable,
    key: Sequence[Any],
    values: Mapping[str, Any],
    dialect: str,
) -> list[Evidence]:
    """Every piece of reflected evidence of the subject in ``checked.table`` (see the module)."""
    subject = manifest.subject
    found: list[Evidence] = []
    for fk, identity in _subject_keys(schema, manifest, checked):
        if identity is None:
            mapping = dict(zip(fk.referred_columns, fk.columns, strict=True))
            key_values = dict(zip(subject.key_columns, key, strict=True))
            condition = and_(*(table.c[mapping[k]] == key_values[k] for k in subject.key_columns))
        elif identity in values:
            column = table.c[fk.columns[0]]
            found_by = identity_condition(column, subject.identity(identity), values[identity], dialect)
            if found_by is None:
                continue
            condition = found_by
        else:
            continue
        found.append(Evidence(fk.label, condition, _changes_for(checked, fk, subject.table)))
    found += _identity_evidence(manifest, table, checked, values, dialect)
    return found


def _identity_evidence(
    manifest: Manifest, table: Table, checked: CheckedTable, values: Mapping[str, Any], dialect: str
) -> list[Evidence]:
    subject = manifest.subject
    spec = manifest.tables.get(checked.table, TableSpec())
    changes = {c.column: c for _, link_changes in checked.links for c in link_changes}
    found = []
    for name in sorted(subject.identities):
        identity = subject.identity(name)
        column = identity.column
        if name not in values or column in subject.key_columns or column not in table.c:
            continue
        declared = spec.columns.get(column)
        changed = declared is not None and declared.strategy != "retain"
        if not (changed or checked.deletes):
            continue
        condition = identity_condition(table.c[column], identity, values[name], dialect)
        if condition is None:
            continue
        own = (changes[column],) if column in changes else ()
        found.append(Evidence(f"{checked.table}.{column} = the subject's {name}", condition, own))
    return found


def _wrong(table: Table, changes: Sequence[ColumnChange]) -> ColumnElement[bool]:
    """Rows where a changed column does not hold its surrogate."""
    wrong = [value_differs(table.c[change.column], change) for change in changes]
    return or_(*wrong) if wrong else false()


def rows_left_conditions(
    schema: SchemaInfo,
    manifest: Manifest,
    table: Table,
    checked: CheckedTable,
    key: Sequence[Any],
    values: Mapping[str, Any],
    dialect: str,
) -> list[tuple[str, ColumnElement[bool]]]:
    """Per evidence label, the rows of ``checked.table`` that must not exist after erasure: rows
    the evidence ties to the subject (a deleted table), or such rows not holding their surrogates."""
    if checked.strategy == "retain" and not any(changes for _, changes in checked.links):
        return []
    return [
        (item.label, item.condition if checked.deletes else and_(item.condition, _wrong(table, item.changes)))
        for item in evidence(schema, manifest, table, checked, key, values, dialect)
    ]


async def independent_rows_left(
    conn: AsyncConnection,
    schema: SchemaInfo,
    manifest: Manifest,
    table: Table,
    checked: CheckedTable,
    key: Sequence[Any],
    values: Mapping[str, Any],
) -> dict[str, int]:
    """Rows of ``checked.table`` the reflected evidence still ties to the subject, per evidence
    label (only non-zero counts)."""
    left: dict[str, int] = {}
    conditions = rows_left_conditions(schema, manifest, table, checked, key, values, conn.dialect.name)
    for label, condition in conditions:
        rows = int((await conn.execute(count_statement(table, condition))).scalar_one())
        if rows:
            left[label] = rows
    return left
