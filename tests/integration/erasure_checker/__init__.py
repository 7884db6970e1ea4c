"""Proof that an erasure did what it must and nothing else, from snapshots of the target taken
before and after it (independent of the engine's SQL and of its own verification).

    before = await take_snapshot(engine, schemas)
    ... erase the subject through the API ...
    after = await take_snapshot(engine, schemas)
    await assert_erased(engine, manifest, subject_key, before, after)

It holds that (a) every row not belonging to the subject is byte-identical, by primary key, every
column as the database renders it as text; (b) no original personal value of the subject (every
column the manifest names, every table, every schema, and the identities) is left in any text or
JSON column of the subject's surviving rows, of new or changed rows, and, for identifying values,
of any row at all; (c) every NOT NULL, UNIQUE, FOREIGN KEY and CHECK constraint holds; (d) rows
the manifest keeps still exist with every column outside the erased ones unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.manifest.model import Manifest
from tests.integration.erasure_checker.constraints import constraint_findings
from tests.integration.erasure_checker.footprint import Footprint, footprint
from tests.integration.erasure_checker.snapshot import Snapshot, TableSnapshot, plain, take_snapshot

__all__ = (
    "Footprint",
    "Snapshot",
    "assert_erased",
    "assert_export_counts",
    "erasure_findings",
    "footprint",
    "sql_counts",
    "take_snapshot",
)

SUBSTRING_MIN_LENGTH = 4
"""Shorter values (``'Al'``, ``'12'``) count as leftovers only when a whole cell equals them."""


@dataclass(frozen=True)
class _Personal:
    value: str
    identifying: bool
    substring: bool

    def found_in(self, cell: str) -> bool:
        folded = cell.casefold()
        return self.value in folded if self.substring else self.value == folded.strip()


def _row_findings(
    table: TableSnapshot, after: TableSnapshot | None, fates: Mapping[Any, Any], volatile: frozenset[str]
) -> list[str]:
    findings: list[str] = []
    after_rows = {} if after is None else after.rows
    for key, row in table.rows.items():
        fate = fates.get(key)
        now = after_rows.get(key)
        if fate is not None and fate.deleted:
            if now is not None:
                findings.append(f"(a) {table.key} row {key}: the subject's row was not deleted")
            continue
        if now is None:
            kind = "(d) kept row of the subject" if fate is not None else "(a) row of someone else"
            findings.append(f"{kind} {table.key} {key} is gone")
            continue
        allowed = set() if fate is None else fate.changeable | (volatile if fate.changeable else set())
        changed = sorted(c for c in table.columns if row[c] != now[c] and c not in allowed)
        if changed:
            kind = "(d) kept row of the subject" if fate is not None else "(a) row of someone else"
            findings.append(f"{kind} {table.key} {key} changed in columns {changed}")
    findings += [f"(a) {table.key}: a new row {k} appeared" for k in after_rows.keys() - table.rows.keys()]
    return findings


def _personal_values(before: Snapshot, manifest: Manifest, found: Footprint) -> list[_Personal]:
    identity_columns = {manifest.subject.identity(n).column for n in manifest.subject.identities}
    values: dict[str, _Personal] = {}
    for table_key, fates in found.rows.items():
        table = before.tables[table_key]
        unique = {u[0] for u in table.unique if len(u) == 1}
        is_subject = table is before.table(manifest.subject.table)
        for key, fate in fates.items():
            row = table.rows[key]
            columns = set(fate.personal) | (identity_columns if is_subject else set())
            for column in columns:
                value = plain(before.dialect, row.get(column))
                if value is None or not value.strip():
                    continue
                identifying = column in unique or (is_subject and column in identity_columns)
                substring = column in table.text_columns and len(value) >= SUBSTRING_MIN_LENGTH
                folded = value.casefold() if substring else value.casefold().strip()
                current = values.get(folded)
                values[folded] = _Personal(
                    folded, identifying or bool(current and current.identifying), substring
                )
    return list(values.values())


def _leftovers(before: Snapshot, after: Snapshot, found: Footprint, values: list[_Personal]) -> list[str]:
    findings: list[str] = []
    for table_key, table in after.tables.items():
        old = before.tables.get(table_key)
        fates = found.rows.get(table_key, {})
        for key, row in table.rows.items():
            fate = fates.get(key)
            previous = None if old is None else old.rows.get(key)
            searched_all = fate is not None or previous is None or previous != row
            for column in table.text_columns:
                cell = plain(after.dialect, row[column])
                if cell is None or (fate is not None and column in fate.retained):
                    continue
                hits = [p for p in values if (searched_all or p.identifying) and p.found_in(cell)]
                findings += [
                    f"(b) {table_key} row {key} column {column} still holds a personal value of the "
                    f"subject ({len(p.value)} characters)"
                    for p in hits
                ]
    return findings


def _volatile(after: Snapshot, volatile: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    return {after.table(name).key: frozenset(columns) for name, columns in volatile.items()}


async def erasure_findings(
    engine: AsyncEngine,
    manifest: Manifest,
    subject_key: tuple[str, ...],
    before: Snapshot,
    after: Snapshot,
    *,
    volatile: Mapping[str, Iterable[str]] | None = None,
) -> list[str]:
    """Everything wrong with the erasure of ``subject_key`` (its key columns' values as text).

    ``volatile`` names columns the application's triggers rewrite on every update (a
    ``last_update`` column): they may change in the rows erasure updates, nowhere else.
    """
    found = footprint(before, manifest, subject_key)
    assert found.count(before.table(manifest.subject.table).key) == 1, "the subject key matches no single row"
    triggers = _volatile(after, volatile or {})
    findings: list[str] = []
    for table_key, table in before.tables.items():
        findings += _row_findings(
            table,
            after.tables.get(table_key),
            found.rows.get(table_key, {}),
            triggers.get(table_key, frozenset()),
        )
    findings += _leftovers(before, after, found, _personal_values(before, manifest, found))
    findings += await constraint_findings(engine, after)
    return findings


async def assert_erased(
    engine: AsyncEngine,
    manifest: Manifest,
    subject_key: tuple[str, ...],
    before: Snapshot,
    after: Snapshot,
    *,
    volatile: Mapping[str, Iterable[str]] | None = None,
) -> Footprint:
    """Fail listing every finding of :func:`erasure_findings`; return the subject's footprint."""
    findings = await erasure_findings(engine, manifest, subject_key, before, after, volatile=volatile)
    assert not findings, "erasure check failed:\n  " + "\n  ".join(findings[:40])
    return footprint(before, manifest, subject_key)


async def sql_counts(engine: AsyncEngine, queries: Mapping[str, str], **params: Any) -> dict[str, int]:
    """Run hand-written ``SELECT count(*) ...`` queries: table -> count."""
    counts: dict[str, int] = {}
    async with engine.connect() as connection:
        for table, query in queries.items():
            counts[table] = int((await connection.execute(text(query), params)).scalar_one())
    return counts


def assert_export_counts(document: Mapping[str, Any], system: str, expected: Mapping[str, int]) -> None:
    """The export's row count per table equals ``expected`` (hand-written SQL); a table the
    export leaves out counts 0, and a table the export has must be expected."""
    tables = document["systems"][system]["tables"]
    exported = {name: int(table["row_count"]) for name, table in tables.items()}
    for name, table in tables.items():
        assert len(table["rows"]) == table["row_count"], name
    wanted = dict(expected)
    names = set(exported) | set(wanted)
    assert {n: exported.get(n, 0) for n in names} == {n: wanted.get(n, 0) for n in names}
