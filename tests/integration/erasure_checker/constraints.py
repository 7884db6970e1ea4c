"""Constraint checks after an erasure: NOT NULL, UNIQUE and foreign keys over the snapshot, and
the database's own verdict (SQLite pragmas; CHECK expressions evaluated on PostgreSQL/MariaDB)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.erasure_checker.snapshot import Snapshot, plain, table_clause

__all__ = ("constraint_findings",)


def _snapshot_findings(snapshot: Snapshot) -> list[str]:
    findings: list[str] = []
    for key, table in snapshot.tables.items():
        for column in sorted(table.not_null):
            nulls = sum(1 for r in table.rows.values() if r[column] is None)
            if nulls:
                findings.append(f"NOT NULL violated: {key}.{column} holds NULL in {nulls} row(s)")
        for columns in table.unique:
            values = Counter(
                tuple(plain(snapshot.dialect, r[c]) for c in columns)
                for r in table.rows.values()
                if all(r[c] is not None for c in columns)
            )
            duplicates = sum(1 for n in values.values() if n > 1)
            if duplicates:
                findings.append(
                    f"UNIQUE violated: {key}({', '.join(columns)}) has {duplicates} duplicated value(s)"
                )
    for fk in snapshot.foreign_keys:
        parent = snapshot.tables.get(fk.referred_table)
        if parent is None:
            continue
        keys = {
            tuple(plain(snapshot.dialect, r[c]) for c in fk.referred_columns) for r in parent.rows.values()
        }
        child = snapshot.tables[fk.table]
        orphans = [
            k
            for k, r in child.rows.items()
            if all(r[c] is not None for c in fk.columns)
            and tuple(plain(snapshot.dialect, r[c]) for c in fk.columns) not in keys
        ]
        if orphans:
            findings.append(
                f"FOREIGN KEY violated: {fk.name or '?'} {fk.table}({', '.join(fk.columns)}) -> "
                f"{fk.referred_table}: {len(orphans)} orphan row(s)"
            )
    return findings


def _database_findings(connection: Connection, snapshot: Snapshot) -> list[str]:
    findings: list[str] = []
    if connection.dialect.name == "sqlite":
        checked = connection.exec_driver_sql("PRAGMA foreign_key_check")
        findings += [f"PRAGMA foreign_key_check: {tuple(row)}" for row in checked]
        verdict = [r[0] for r in connection.exec_driver_sql("PRAGMA integrity_check")]
        if verdict != ["ok"]:
            findings.append(f"PRAGMA integrity_check: {verdict[:5]}")
        return findings
    for key, table_snapshot in snapshot.tables.items():
        if not table_snapshot.checks:
            continue
        table = table_clause(connection, table_snapshot.name, table_snapshot.schema)
        for name, expression in table_snapshot.checks:
            count = connection.execute(
                select(func.count()).select_from(table).where(text(f"NOT ({expression})"))
            )
            violations = count.scalar_one()
            if violations:
                findings.append(f"CHECK violated: {key} constraint {name} fails on {violations} row(s)")
    return findings


async def constraint_findings(engine: AsyncEngine, after: Snapshot) -> list[str]:
    """Every constraint violation in the target (empty when all hold)."""
    findings = _snapshot_findings(after)
    async with engine.connect() as connection:
        findings += await connection.run_sync(_database_findings, after)
    return findings
