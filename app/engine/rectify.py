"""Rectification (Art. 16): set rectifiable columns of the subject's rows, one transaction per system.

Only columns the manifest marks ``rectifiable`` are touched; every value is checked against the
reflected column type (kind, length, NULL) before anything is written. Audit payloads name the
columns and count rows, never the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Column, Table, update
from sqlalchemy import types as sqltypes
from sqlalchemy.exc import DBAPIError

from app.engine.errors import EngineError
from app.engine.integrity import IntegrityDetail, constraint_refusal
from app.engine.runs import RequestFailed, RequestOutcome, RequestRun, SystemOutcome, SystemRun
from app.engine.subjects import reflect_target, resolve_subject, subject_condition, subject_key_reference

__all__ = ("InvalidValue", "check_value", "run_rectification")


class InvalidValue(EngineError, ValueError):
    """A value does not fit the column; the message says why without repeating the value."""


def _as_datetime(value: Any, kind: type[date] | type[datetime] | type[time]) -> Any:
    if not isinstance(value, str):
        raise InvalidValue(f"expects an ISO 8601 {kind.__name__} string")
    try:
        return kind.fromisoformat(value)
    except ValueError as exc:
        raise InvalidValue(f"expects an ISO 8601 {kind.__name__}") from exc


def _check_string(column_type: sqltypes.String, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidValue("expects text")
    if column_type.length is not None and len(value) > column_type.length:
        raise InvalidValue(f"is longer than {column_type.length} characters")
    return value


def _check_number(column_type: sqltypes.Numeric[Any], value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidValue("expects a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise InvalidValue("expects a number") from exc
    if not number.is_finite():
        raise InvalidValue("expects a finite number")
    precision, scale = column_type.precision, column_type.scale
    if precision is not None and scale is not None:
        digits = len(number.quantize(Decimal(1).scaleb(-scale)).as_tuple().digits)
        if max(digits, scale + 1) > precision:
            raise InvalidValue(f"does not fit NUMERIC({precision}, {scale})")
    return float(number) if isinstance(column_type, sqltypes.Float) else number


def check_value(column: Column[Any], value: Any) -> Any:
    """The value converted for ``column``'s type.

    Raises:
        InvalidValue: wrong kind, too long, NULL into NOT NULL, not a date...
    """
    column_type = column.type
    if value is None:
        if not column.nullable:
            raise InvalidValue("cannot be null")
        return None
    result: Any
    if isinstance(column_type, sqltypes.Boolean):
        if not isinstance(value, bool):
            raise InvalidValue("expects true or false")
        result = value
    elif isinstance(column_type, sqltypes.Integer):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValue("expects an integer")
        result = value
    elif isinstance(column_type, sqltypes.Numeric):
        result = _check_number(column_type, value)
    elif isinstance(column_type, sqltypes.DateTime):
        result = _as_datetime(value, datetime)
    elif isinstance(column_type, sqltypes.Date):
        result = _as_datetime(value, date)
    elif isinstance(column_type, sqltypes.Time):
        result = _as_datetime(value, time)
    elif isinstance(column_type, sqltypes.String):
        result = _check_string(column_type, value)
    else:
        raise InvalidValue(f"has a type ({column_type.__visit_name__}) that cannot be rectified")
    return result


def _checked_changes(
    system_run: SystemRun, tables: Mapping[str, Any], changes: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    manifest = system_run.manifest
    checked: dict[str, dict[str, Any]] = {}
    for table_name, columns in sorted(changes.items()):
        allowed = set(manifest.rectifiable_columns(table_name))
        table = tables.get(table_name)
        for column_name, value in sorted(columns.items()):
            where = f"{system_run.system}.{table_name}.{column_name}"
            if column_name not in allowed or table is None or column_name not in table.c:
                raise RequestFailed(f"{where} is not rectifiable", system=system_run.system)
            try:
                checked.setdefault(table_name, {})[column_name] = check_value(table.c[column_name], value)
            except InvalidValue as exc:
                raise RequestFailed(f"value for {where} {exc}", system=system_run.system) from exc
    return checked


async def _rectify_system(run: RequestRun, system_run: SystemRun) -> SystemOutcome:
    engine = await run.targets(system_run.system, system_run.manifest)
    changes = run.changes.get(system_run.system, {})
    async with engine.begin() as connection:
        reflection = await run.reflection(connection, system_run, only=system_run.manifest.managed_tables())
        target = await reflect_target(connection, system_run.manifest, reflection)
        checked = _checked_changes(system_run, target.tables, changes)
        manifest = system_run.manifest
        subject_table = target.tables[manifest.subject.table]
        key = await resolve_subject(connection, manifest, subject_table, run.identities, run.tenant)
        if key is None:
            return SystemOutcome(not_found=True)
        counts: dict[str, int] = {}
        for table_name, values in checked.items():
            table = target.tables[table_name]
            statement = update(table).where(subject_condition(target, table_name, key)).values(values)
            try:
                result = await connection.execute(statement)
            except DBAPIError as exc:
                refusal = constraint_refusal(exc)
                if refusal is None:
                    raise
                raise _refused(system_run.system, table, sorted(values), refusal) from exc
            counts[table_name] = int(result.rowcount or 0)
    audit = {"tables": {name: sorted(values) for name, values in checked.items()}, "rows": counts}
    secret = run.settings.audit_key
    reference = subject_key_reference(secret, system_run.system, key) if secret else None
    return SystemOutcome(counts=counts, audit=audit, subject_key_ref=reference)


def _refused(system: str, table: Table, columns: list[str], detail: IntegrityDetail) -> RequestFailed:
    """A rectified value broke a constraint: name table, columns and constraint, never the value
    (the system's transaction rolled back, the request fails)."""
    culprits = [c for c in columns if c == detail.column or c in _constrained(table, detail.constraint)]
    names = ", ".join(f"'{table.name}.{c}'" for c in culprits or columns)
    return RequestFailed(
        f"the new value of {names} violates {detail.describe(table.name)}; nothing was changed in "
        f"system '{system}'",
        system=system,
    )


def _constrained(table: Table, constraint: str | None) -> set[str]:
    """Columns of the named constraint or unique index of ``table`` (empty when unknown)."""
    for candidate in [*table.constraints, *table.indexes]:
        if constraint is not None and getattr(candidate, "name", None) == constraint:
            return {c.name for c in getattr(candidate, "columns", ())}
    return set()


async def run_rectification(run: RequestRun) -> RequestOutcome:
    """Apply the request's changes system by system; completed systems are skipped on resume."""
    summary: dict[str, Any] = {}
    for system_run in run.systems:
        if system_run.status == "completed":
            summary[system_run.system] = {"not_found": system_run.not_found, "rows": dict(system_run.counts)}
            continue
        outcome = await _rectify_system(run, system_run)
        await run.progress.complete_system(system_run.system, outcome, action="request.system_rectified")
        summary[system_run.system] = {"not_found": outcome.not_found, "rows": dict(outcome.counts)}
    return RequestOutcome(audit={"systems": summary})
