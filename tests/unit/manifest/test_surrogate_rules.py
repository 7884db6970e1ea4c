"""One set of surrogate rules: a constraint-keeping default per column type, and constants checked
against the type, naming value and type."""

from __future__ import annotations

import uuid

import pytest

from app.engine.surrogates import uuid_for_key
from app.manifest.model import Surrogate
from app.manifest.schema import ColumnInfo
from app.manifest.surrogate_rules import (
    ConstantError,
    constant_value,
    default_surrogate_name,
    surrogate_problem,
)

KEY = (ColumnInfo("id", "integer", "integer", nullable=False, primary_key=True),)


def _column(type_name: str, affinity: str, **extra: object) -> ColumnInfo:
    return ColumnInfo("value", type_name, affinity, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("column", "unique", "expected"),
    [
        (ColumnInfo("email", "varchar", "text", length=120), True, "email"),
        (ColumnInfo("handle", "varchar", "text", length=40), True, "unique"),
        (ColumnInfo("country", "char", "text", length=2), False, "redacted"),
        (_column("integer", "integer", nullable=False), False, "zero"),
        (_column("numeric", "number", nullable=False), False, "zero"),
        (_column("boolean", "boolean", nullable=False), False, "false"),
        (_column("date", "date", nullable=False), False, "epoch"),
        (_column("time", "other", nullable=False), False, "epoch"),
        (_column("timestamp", "datetime", nullable=False, timezone=True), False, "epoch"),
        (_column("uuid", "other", nullable=False), True, "uuid"),
        (_column("inet", "other", nullable=False), False, "ip"),
        (_column("cidr", "other", nullable=False), False, "ip"),
        (_column("jsonb", "other", nullable=False), False, "json"),
        (_column("array", "other", nullable=False), False, "array"),
        (_column("enum", "text", nullable=False, enum_values=("a", "b")), False, "first"),
        (_column("bytea", "binary", nullable=False), False, "binary"),
        (_column("inet", "other"), False, "null"),
        (_column("jsonb", "other"), False, "null"),
    ],
)
def test_every_type_has_a_default_that_fits_it(column: ColumnInfo, unique: bool, expected: str) -> None:
    name = default_surrogate_name(column, unique=unique)
    assert name == expected
    assert surrogate_problem(Surrogate(kind=name), column, unique=unique, key=KEY) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        (_column("boolean", "boolean"), "maybe", ["'maybe'", "boolean", "true or false"]),
        (_column("integer", "integer"), "n/a", ["'n/a'", "integer"]),
        (_column("date", "date"), "unknown", ["'unknown'", "date", "ISO 8601"]),
        (_column("uuid", "other"), "nope", ["'nope'", "uuid"]),
        (_column("inet", "other"), "300.1.1.1", ["'300.1.1.1'", "inet"]),
        (_column("enum", "text", enum_values=("a", "b")), "c", ["'c'", "one of a, b"]),
        (_column("jsonb", "other"), "n/a", ["'n/a'", "not JSON text"]),
        (_column("integer", "integer"), {"a": 1}, ["integer", "structured"]),
    ],
)
def test_a_constant_of_the_wrong_type_names_value_and_type(
    column: ColumnInfo, value: object, words: list[str]
) -> None:
    problem = surrogate_problem(Surrogate(kind="constant", value=value), column, unique=False, key=KEY)  # type: ignore[arg-type]
    assert problem is not None
    assert problem.kind == "surrogate_type"
    for word in words:
        assert word in problem.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [({}, {}), ([1, "a"], [1, "a"]), ("{}", {}), ('"n/a"', "n/a"), (5, 5), (True, True)],
)
def test_a_json_column_takes_any_json_value(value: object, expected: object) -> None:
    assert constant_value(_column("jsonb", "other"), value) == expected


def test_constants_are_converted_for_their_type() -> None:
    assert constant_value(_column("boolean", "boolean"), "yes") is True
    assert constant_value(_column("integer", "integer"), "42") == 42
    with pytest.raises(ConstantError):
        constant_value(_column("integer", "integer"), True)


@pytest.mark.parametrize(
    ("surrogate", "column", "unique", "kind"),
    [
        ("unique", _column("uuid", "other", nullable=False), True, None),
        ("uuid", _column("uuid", "other", nullable=False), True, None),
        ("uuid", ColumnInfo("ref", "char", "text", length=36), True, None),
        ("uuid", ColumnInfo("ref", "varchar", "text", length=20), True, "surrogate_too_long"),
        ("email", _column("uuid", "other"), False, "surrogate_type"),
        ("epoch", _column("date", "date"), True, "unique_constant"),
        ("null", _column("inet", "other", nullable=False), False, "not_null_delete"),
        ("false", _column("integer", "integer"), False, "surrogate_type"),
    ],
)
def test_named_surrogates_are_checked_against_type_and_constraints(
    surrogate: str, column: ColumnInfo, unique: bool, kind: str | None
) -> None:
    problem = surrogate_problem(Surrogate(kind=surrogate), column, unique=unique, key=KEY)  # type: ignore[arg-type]
    assert (problem.kind if problem else None) == kind


def test_keyed_surrogates_need_a_primary_key() -> None:
    problem = surrogate_problem(
        Surrogate(kind="unique"), ColumnInfo("h", "text", "text"), unique=True, key=()
    )
    assert problem is not None
    assert "primary key" in problem.message


def test_derived_uuids_are_rfc_9562_for_every_key() -> None:
    keys = [str(n) for n in range(2000)] + ["1.2", "abc", "999999999999"]
    derived = [uuid.UUID(uuid_for_key(key)) for key in keys]
    assert {(d.version, d.variant) for d in derived} == {(3, uuid.RFC_4122)}
    assert len(set(derived)) == len(keys)
