"""Which surrogate a column takes and whether a surrogate or constant fits it: validation and erasure."""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from app.manifest.model import Surrogate
from app.manifest.schema import ColumnInfo

__all__ = (
    "KEYED_SURROGATES",
    "SURROGATE_KINDS",
    "ConstantError",
    "SurrogateProblem",
    "constant_value",
    "default_surrogate",
    "default_surrogate_name",
    "surrogate_problem",
)

_ANY = frozenset(
    {
        "text",
        "integer",
        "number",
        "boolean",
        "date",
        "time",
        "datetime",
        "uuid",
        "inet",
        "cidr",
        "json",
        "array",
        "enum",
        "binary",
        "other",
    }
)
SURROGATE_KINDS: dict[str, frozenset[str]] = {
    "null": _ANY,
    "constant": _ANY - {"binary"},
    "redacted": frozenset({"text"}),
    "email": frozenset({"text"}),
    "unique": frozenset({"text", "integer", "number", "uuid", "inet", "cidr", "binary"}),
    "hash": frozenset({"text"}),
    "zero": frozenset({"integer", "number"}),
    "epoch": frozenset({"date", "time", "datetime"}),
    "false": frozenset({"boolean"}),
    "uuid": frozenset({"uuid", "text"}),
    "json": frozenset({"json"}),
    "array": frozenset({"array"}),
    "ip": frozenset({"inet", "cidr"}),
    "first": frozenset({"enum"}),
    "binary": frozenset({"binary"}),
}
"""Every named surrogate and the column kinds (:func:`app.manifest.schema.column_kind`) it fits."""

KEYED_SURROGATES = frozenset({"email", "unique", "hash", "uuid"})
"""Surrogates derived from the row key (with the secret for ``hash``): distinct per row, stable."""
_UNIQUE_WHEN_UNIQUE = frozenset({"redacted", "zero", "ip", "binary", "null"})
"""Surrogates that switch to a key-derived form on a UNIQUE column (NULLs never collide)."""
_INTEGER_KEY = frozenset({"zero", "ip"})
"""Unique forms computed from a single integer key (``-id``, ``'::' + id``)."""
_NULLABLE_BLANK = frozenset({"uuid", "inet", "cidr", "json", "array", "enum", "binary", "other"})
"""Kinds with no neutral value of their own: NULL when the column allows it."""
_BY_KIND = {
    "integer": "zero",
    "number": "zero",
    "boolean": "false",
    "date": "epoch",
    "time": "epoch",
    "datetime": "epoch",
    "uuid": "uuid",
    "inet": "ip",
    "cidr": "ip",
    "json": "json",
    "array": "array",
    "enum": "first",
    "binary": "binary",
    "other": "null",
}
_EMAILISH = "mail"
_MIN_UNIQUE_HASH = 16


@dataclass(frozen=True)
class SurrogateProblem:
    """Why a surrogate cannot be written: a stable ``kind`` (the validation issue kind) and a
    message naming the surrogate and the column's type, never a stored value."""

    kind: str
    message: str

    def __str__(self) -> str:
        return self.message


class ConstantError(ValueError):
    """A constant does not fit its column's type; the message names value and type."""


def default_surrogate_name(column: ColumnInfo, *, unique: bool) -> str:
    """The type-aware default surrogate of a column whose manifest entry names none.

    Text: ``email`` for columns named like e-mail, ``unique`` for other UNIQUE columns,
    ``redacted`` otherwise; numbers ``zero`` (``-id`` when UNIQUE); booleans ``false``; dates,
    times and timestamps ``epoch``; uuid ``uuid``; inet/cidr ``ip``; JSON ``json`` (``{}``);
    arrays ``array`` (empty); enums ``first`` (the first label); binary ``binary`` (empty). A
    nullable column of a kind with no neutral value (uuid, inet, cidr, JSON, array, enum, binary,
    other types) becomes NULL instead.
    """
    kind = column.kind
    if kind == "text":
        if _EMAILISH in column.name.lower():
            return "email"
        return "unique" if unique else "redacted"
    if kind in _NULLABLE_BLANK and column.nullable:
        return "null"
    return _BY_KIND[kind]


def default_surrogate(column: ColumnInfo, *, unique: bool) -> Surrogate:
    """:func:`default_surrogate_name` as a manifest :class:`Surrogate`."""
    return Surrogate(kind=default_surrogate_name(column, unique=unique))  # type: ignore[arg-type]


def surrogate_problem(
    surrogate: Surrogate, column: ColumnInfo, *, unique: bool, key: Sequence[ColumnInfo]
) -> SurrogateProblem | None:
    """Why ``surrogate`` cannot be written into ``column`` (None: it fits).

    Checks the column kind, NOT NULL, UNIQUE, the declared length, the row key keyed forms need
    and, for ``constant``, the value against the type.
    """
    name, kind = surrogate.kind, column.kind
    if kind not in SURROGATE_KINDS[name]:
        fits = ", ".join(sorted(k for k in SURROGATE_KINDS if kind in SURROGATE_KINDS[k]))
        return SurrogateProblem(
            "surrogate_type", f"({column.type_name}) cannot take the `{name}` surrogate (it takes: {fits})"
        )
    if name == "null":
        return None if column.nullable else _NOT_NULL
    if unique and name not in KEYED_SURROGATES | _UNIQUE_WHEN_UNIQUE:
        return SurrogateProblem(
            "unique_constant",
            f"is UNIQUE, so one `{name}` value cannot be written to several rows; use surrogate "
            "`unique`, `email` or `null`",
        )
    return (
        _constant_problem(surrogate, column)
        or _key_problem(name, column, unique=unique, key=key)
        or _length_problem(surrogate, column, unique=unique)
    )


_NOT_NULL = SurrogateProblem(
    "not_null_delete", "is NOT NULL, so the `null` surrogate cannot be written; name a non-null surrogate"
)


def _constant_problem(surrogate: Surrogate, column: ColumnInfo) -> SurrogateProblem | None:
    if surrogate.kind != "constant":
        return None
    try:
        constant_value(column, surrogate.value)
    except ConstantError as exc:
        return SurrogateProblem("surrogate_type", str(exc))
    return None


def _key_problem(
    name: str, column: ColumnInfo, *, unique: bool, key: Sequence[ColumnInfo]
) -> SurrogateProblem | None:
    keyed = name in KEYED_SURROGATES or (unique and name in _UNIQUE_WHEN_UNIQUE - {"null"})
    if not keyed:
        return None
    if not key:
        return SurrogateProblem(
            "surrogate_key",
            f"cannot take `{name}`: it is derived from the row key, and the table has no primary key",
        )
    from_integer = (unique and name in _INTEGER_KEY) or (
        name == "unique" and column.kind in ("integer", "number", "inet", "cidr")
    )
    if from_integer and (len(key) != 1 or key[0].kind != "integer"):
        return SurrogateProblem(
            "surrogate_key",
            f"({column.type_name}) cannot take `{name}`: it is computed from a single integer "
            "primary key, which the table lacks",
        )
    return None


def _length_problem(surrogate: Surrogate, column: ColumnInfo, *, unique: bool) -> SurrogateProblem | None:
    if column.kind != "text" or not column.length:
        return None
    needed = surrogate.max_length
    if surrogate.kind == "hash" and unique:
        needed = _MIN_UNIQUE_HASH
    elif surrogate.kind == "redacted" and unique:
        needed = Surrogate(kind="unique").max_length
    elif surrogate.kind in ("hash", "redacted"):
        needed = None  # cut to the column
    if needed and needed > column.length:
        return SurrogateProblem(
            "surrogate_too_long",
            f"holds at most {column.length} characters but the `{surrogate.kind}` surrogate "
            f"needs up to {needed}",
        )
    return None


# --- constants -----------------------------------------------------------------------------

_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})


def constant_value(column: ColumnInfo, value: Any) -> Any:
    """``value`` converted for ``column``'s type, as the driver writes it.

    Raises:
        ConstantError: the value does not fit the type (the message names value and type).
    """
    kind = column.kind
    if value is None:
        raise ConstantError("cannot take a constant without a value (write `null` for NULL)")
    if kind == "json":
        return _json_constant(column, value)
    if kind == "array":
        if not isinstance(value, list):
            raise _wrong(column, value, "a list")
        return value
    if isinstance(value, dict | list):
        raise _wrong(column, value, "a single value (structured values fit JSON and array columns)")
    try:
        converted = _scalar(kind, column, value)
    except (ValueError, TypeError, InvalidOperation) as exc:
        expects = _EXPECTS.get(kind, "a value of that type")
        if kind == "enum" and column.enum_values:
            expects = f"one of {', '.join(column.enum_values)}"
        raise _wrong(column, value, expects) from exc
    return converted


_EXPECTS = {
    "boolean": "true or false",
    "integer": "an integer",
    "number": "a number",
    "date": "an ISO 8601 date (2000-01-31)",
    "time": "an ISO 8601 time (12:00:00)",
    "datetime": "an ISO 8601 timestamp (2000-01-31T12:00:00)",
    "uuid": "a UUID",
    "inet": "an IP address",
    "cidr": "a network (10.0.0.0/8)",
    "enum": "one of its labels",
}


def _wrong(column: ColumnInfo, value: Any, expects: str) -> ConstantError:
    return ConstantError(f"cannot take constant {value!r}: type {column.type_name} expects {expects}")


def _scalar(kind: str, column: ColumnInfo, value: Any) -> Any:
    if kind == "boolean":
        return _boolean(value)
    if isinstance(value, bool) and kind != "text":
        raise TypeError("a boolean is not a value of this type")
    text = str(value).strip()
    converters: dict[str, Any] = {
        "integer": lambda: value if isinstance(value, int) else int(text),
        "number": lambda: _finite(Decimal(text)),
        "date": lambda: date.fromisoformat(text),
        "time": lambda: time.fromisoformat(text),
        "datetime": lambda: datetime.fromisoformat(text),
        "uuid": lambda: str(uuid.UUID(text)),
        "inet": lambda: _address(column, text),
        "cidr": lambda: str(ipaddress.ip_network(text)),
        "enum": lambda: _label(column, text),
        "text": lambda: str(value).lower() if isinstance(value, bool) else str(value),
    }
    convert = converters.get(kind)
    return convert() if convert is not None else value


def _address(column: ColumnInfo, text: str) -> str:
    """An address constant; MariaDB's INET4 and INET6 take only addresses of their family."""
    if column.type_name == "inet4":
        return str(ipaddress.IPv4Address(text))
    if column.type_name == "inet6":
        return str(ipaddress.IPv6Address(text))
    return str(ipaddress.ip_interface(text))


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a boolean")


def _finite(number: Decimal) -> Decimal:
    if not number.is_finite():
        raise ValueError("not finite")
    return number


def _label(column: ColumnInfo, text: str) -> str:
    if column.enum_values and text not in column.enum_values:
        raise ValueError(f"not one of {', '.join(column.enum_values)}")
    return text


def _json_constant(column: ColumnInfo, value: Any) -> Any:
    """A JSON column takes any JSON value; a string is read as JSON text (``"{}"`` is an object)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ConstantError(
            f"cannot take constant {value!r}: it is not JSON text for type {column.type_name}; write "
            f"the JSON value itself (value: {{}}), or quote a JSON string (value: '{json.dumps(value)}')"
        ) from exc
