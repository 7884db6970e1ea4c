"""Surrogate values for anonymized columns, computed in SQL per row and per dialect.

A surrogate is a SQLAlchemy Core expression evaluated by the target for every anonymized row,
so a table is anonymized by one ``UPDATE ... SET col = <surrogate>`` statement, never row by row.
Which surrogate a column takes by default, and whether a named one fits its type and constraints,
is decided by :mod:`app.manifest.surrogate_rules` (validation asks the same functions); this
module only builds the expressions.

Every surrogate is a function of the row key (and, for ``hash``, the service secret) or a
constant, never of the value it replaces: re-applying an erasure (a replay after a restore, a
second request) writes exactly what the first wrote. ``hash`` is HMAC-SHA256 under a key derived
from the service's audit key, over ``<table>.<column>:<row key>``, computed in SQL without
extensions (the HMAC pads are bound as parameters; PostgreSQL ``sha256()``, MariaDB ``SHA2()``,
SQLite a function registered by :func:`install_sqlite_functions`). ``uuid`` is an RFC 9562
version 3 UUID: the MD5 of ``'erased:' || key`` with the version and variant bits set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    case,
    cast,
    func,
    literal,
    null,
)
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from app.engine.dialects import Dialect, DialectLike, as_dialect
from app.engine.errors import EngineError
from app.engine.schema_info import column_info_of
from app.engine.surrogate_digests import (
    BindFactory,
    HashKey,
    hash_key_from_secret,
    install_sqlite_functions,
    placeholder_bind,
    plain_bind,
    uuid_for_key,
    uuid_sql,
)
from app.manifest.model import Surrogate
from app.manifest.schema import ColumnInfo, TableInfo
from app.manifest.surrogate_rules import constant_value, default_surrogate, surrogate_problem

__all__ = (
    "EMAIL_LONG",
    "EMAIL_SHORT",
    "EPOCH",
    "SURROGATES",
    "UNSPECIFIED_ADDRESS",
    "UNSPECIFIED_IPV6_ADDRESS",
    "UNSPECIFIED_NETWORK",
    "HashKey",
    "SurrogateContext",
    "SurrogateError",
    "hash_key_from_secret",
    "hash_message_prefix",
    "install_sqlite_functions",
    "key_text_for",
    "parse_surrogate",
    "placeholder_bind",
    "resolved_surrogate",
    "surrogate_expression",
    "surrogate_label",
    "uuid_for_key",
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The fixed instant dates and timestamps are anonymized to."""
EMAIL_LONG = ("erased-", "@invalid.example")
"""Prefix and suffix of the usual e-mail surrogate: ``erased-42@invalid.example``."""
EMAIL_SHORT = ("", "@x.invalid")
"""The compact form used when the long one does not fit the column: ``42@x.invalid``."""
UNIQUE_LONG = ("erased-", "")
UNIQUE_SHORT = ("~", "")
REDACTED = "redacted"
UNSPECIFIED_ADDRESS = "0.0.0.0"  # noqa: S104 - a value written into rows, not an address bound
UNSPECIFIED_NETWORK = f"{UNSPECIFIED_ADDRESS}/32"
UNSPECIFIED_IPV6_ADDRESS = "::"
"""MariaDB's INET6 takes only IPv6 addresses: its unspecified address."""
KEY_SEPARATOR = "."
WIDE_KEY_TEXT = 40
"""Keys are assumed to read as at most this many characters (a BIGINT needs 20)."""


class SurrogateError(EngineError, ValueError):
    """A surrogate cannot honour a column's type or constraints; the message names the column."""


@dataclass(frozen=True)
class SurrogateContext:
    """Everything a surrogate needs to know about the column it replaces.

    Attributes:
        table: the (reflected) table being updated; surrogates may read its other columns.
        column: the column name.
        key_columns: the row key the unique forms derive from (the primary key).
        dialect: the target's :class:`~app.engine.dialects.Dialect` (or its name: ``postgresql``,
            ``mysql`` for MariaDB too, ``sqlite``); :attr:`sql` is the object.
        unique: whether the column alone must be unique.
        hash_key: key of the ``hash`` surrogate (None: ``hash`` is unavailable).
        secret_bind: builds the bind of a secret (the hash pads); the plan renders it as a name.
        table_info: the table as validation reflected it (None: derived from ``table``).
    """

    table: Any
    column: str
    key_columns: tuple[str, ...]
    dialect: DialectLike
    unique: bool = False
    hash_key: HashKey | None = None
    secret_bind: BindFactory = field(default=plain_bind)
    table_info: TableInfo | None = None

    @property
    def sql(self) -> Dialect:
        """What differs in SQL on this target."""
        return as_dialect(self.dialect)

    @property
    def sql_column(self) -> Any:
        """The SQLAlchemy column being replaced."""
        return self.table.c[self.column]

    @property
    def type(self) -> Any:
        """The column's SQLAlchemy type."""
        return self.sql_column.type

    @property
    def info(self) -> ColumnInfo:
        """The column as validation sees it (kind, length, NOT NULL, enum labels)."""
        if self.table_info is not None:
            return self.table_info.columns[self.column]
        return column_info_of(self.table, self.column)

    @property
    def key_infos(self) -> tuple[ColumnInfo, ...]:
        """The row key's columns as validation sees them."""
        if self.table_info is not None:
            return tuple(self.table_info.columns[name] for name in self.key_columns)
        return tuple(column_info_of(self.table, name) for name in self.key_columns)

    @property
    def length(self) -> int | None:
        """Declared character length of a string column (None: unbounded or not a string)."""
        length = getattr(self.type, "length", None)
        return length if isinstance(self.type, sqltypes.String) and length else None

    def fail(self, why: str) -> SurrogateError:
        """An error naming the column (never a value)."""
        return SurrogateError(f"column '{self.table.name}.{self.column}': {why}")


SurrogateFactory = Callable[[SurrogateContext, Surrogate], ColumnElement[Any]]


# --- building blocks -----------------------------------------------------------------------


def _text(expression: Any) -> ColumnElement[str]:
    return cast(expression, String)


def _key_text(ctx: SurrogateContext) -> ColumnElement[str]:
    """The row key as text; composite keys joined by ``.``."""
    parts = [_text(ctx.table.c[name]) for name in ctx.key_columns]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + literal(KEY_SEPARATOR, String) + part
    return joined


def _char_length(ctx: SurrogateContext, expression: Any) -> ColumnElement[int]:
    return ctx.sql.char_length(expression)


def _wrap(prefix: str, key: ColumnElement[str], suffix: str) -> ColumnElement[str]:
    value = key
    if prefix:
        value = literal(prefix, String) + value
    if suffix:
        value = value + literal(suffix, String)
    return value


def _keyed(ctx: SurrogateContext, long: tuple[str, str], short: tuple[str, str]) -> ColumnElement[Any]:
    """A value unique per row (derived from the key) that fits the column's length.

    The long form is used when it fits; for short columns a ``CASE`` on the key's length picks
    the compact form for keys too long for the long one. Both forms cannot collide: their fixed
    parts differ.
    """
    key = _key_text(ctx)
    length = ctx.length
    long_fixed = len(long[0]) + len(long[1])
    short_fixed = len(short[0]) + len(short[1])
    if length is None or length - long_fixed >= WIDE_KEY_TEXT:
        return _wrap(long[0], key, long[1])
    if length <= short_fixed:
        raise ctx.fail(f"VARCHAR({length}) is too short for a unique surrogate")
    if length <= long_fixed:
        return _wrap(short[0], key, short[1])
    return case(
        (_char_length(ctx, key) <= length - long_fixed, _wrap(long[0], key, long[1])),
        else_=_wrap(short[0], key, short[1]),
    )


def _typed(ctx: SurrogateContext, text: str) -> ColumnElement[Any]:
    """A literal in the column's own type, written as text the database casts (inet, arrays)."""
    return ctx.sql.typed_text(text, ctx.type)


# --- named surrogates ----------------------------------------------------------------------


def _null(_ctx: SurrogateContext, _surrogate: Surrogate) -> ColumnElement[Any]:
    return null()


def _email(ctx: SurrogateContext, _surrogate: Surrogate) -> ColumnElement[Any]:
    return _keyed(ctx, EMAIL_LONG, EMAIL_SHORT)


def _unique(ctx: SurrogateContext, _surrogate: Surrogate) -> ColumnElement[Any]:
    """A per-row value in the column's own type: text ``erased-<key>``, numbers ``-id``, uuid,
    ip and binary their key-derived forms."""
    other = _UNIQUE_BY_KIND.get(ctx.info.kind)
    if other is not None:
        return other(ctx)
    return _keyed(ctx, UNIQUE_LONG, UNIQUE_SHORT)


def _redacted(ctx: SurrogateContext, _surrogate: Surrogate) -> ColumnElement[Any]:
    if ctx.unique:
        return _keyed(ctx, ("redacted-", ""), UNIQUE_SHORT)
    text = REDACTED[: ctx.length] if ctx.length else REDACTED
    return literal(text, String)


def _hash(ctx: SurrogateContext, _surrogate: Surrogate) -> ColumnElement[Any]:
    """HMAC of ``<table>.<column>:<row key>``: stable per row, unlinkable without the secret."""
    if ctx.hash_key is None:
        raise ctx.fail("`hash` needs the service secret (LETHE_AUDIT_KEY)")
    message = literal(hash_message_prefix(ctx.table.name, ctx.column), String) + _key_text(ctx)
    try:
        digest = ctx.sql.hmac_sha256(ctx.hash_key.inner_pad, ctx.hash_key.outer_pad, message, ctx.secret_bind)
    except ValueError as exc:
        raise ctx.fail(str(exc)) from exc
    if ctx.length is not None and ctx.length < 64:
        return func.substr(digest, 1, ctx.length)
    return digest


def hash_message_prefix(table: str, column: str) -> str:
    """What ``hash`` puts before the row key in its HMAC message (tests recompute digests)."""
    return f"{table}.{column}:"


def _constant(ctx: SurrogateContext, surrogate: Surrogate) -> ColumnElement[Any]:
    value = constant_value(ctx.info, surrogate.value)
    if ctx.info.kind == "json":
        return _json_text(ctx, json.dumps(value))
    if ctx.info.kind in ("inet", "cidr"):
        return _typed(ctx, str(value))
    return literal(value, ctx.type)


def _json_text(ctx: SurrogateContext, document: str) -> ColumnElement[Any]:
    """A JSON document written as JSON (``jsonb_typeof`` of ``{}`` is ``object``, not string);
    MariaDB/MySQL and SQLite parse the text they are given."""
    return ctx.sql.typed_text(document, ctx.type)


def _zero(ctx: SurrogateContext, _surrogate: Surrogate) -> ColumnElement[Any]:
    if ctx.unique:
        return _negated_key(ctx)
    return literal(0, ctx.type)


def _negated_key(ctx: SurrogateContext) -> ColumnElement[Any]:
    """``-id``: unique numbers for a unique numeric column (single integer key)."""
    negated: ColumnElement[Any] = literal(0, Integer) - ctx.table.c[ctx.key_columns[0]]
    return negated


def _epoch(ctx: SurrogateContext, _surrogate: Surrogate) -> ColumnElement[Any]:
    kind = ctx.type
    if isinstance(kind, sqltypes.DateTime):
        floor = ctx.sql.timestamp_floor
        if floor is not None and isinstance(kind, sqltypes.TIMESTAMP):
            return literal(floor, kind)
        moment = EPOCH if kind.timezone else EPOCH.replace(tzinfo=None)
        return literal(moment, kind)
    if isinstance(kind, sqltypes.Date):
        return literal(EPOCH.date(), kind)
    return literal(time(0, 0), kind)


def _uuid(ctx: SurrogateContext, _surrogate: Surrogate) -> ColumnElement[Any]:
    """An RFC 9562 version 3 UUID of the row key (see :func:`uuid_sql`)."""
    text = uuid_sql(ctx.sql, _key_text(ctx))
    if ctx.sql.casts_text_literals and ctx.info.kind == "uuid":
        return cast(text, postgresql.UUID)
    return text


def _ip(ctx: SurrogateContext, _surrogate: Surrogate) -> ColumnElement[Any]:
    """The unspecified address (``0.0.0.0``, ``0.0.0.0/32``; ``::`` in MariaDB's INET6); on a
    UNIQUE column the address of the key (``'::' + id``, MariaDB ``INET_NTOA(id)`` /
    ``::<id>``)."""
    if ctx.unique:
        return _unique_ip(ctx)
    if ctx.info.type_name == "inet6":
        return _typed(ctx, UNSPECIFIED_IPV6_ADDRESS)
    return _typed(ctx, UNSPECIFIED_NETWORK if ctx.info.kind == "cidr" else UNSPECIFIED_ADDRESS)


def _unique_ip(ctx: SurrogateContext) -> ColumnElement[Any]:
    key = ctx.table.c[ctx.key_columns[0]]
    if ctx.info.type_name == "inet4":  # MariaDB: the key as a dotted quad (unique below 2^32)
        return func.inet_ntoa(key, type_=String)
    if ctx.info.type_name == "inet6":  # MariaDB: the key as the low bits of an IPv6 address
        padded = func.lpad(func.hex(key), 32, literal("0", String), type_=String)
        return func.inet6_ntoa(func.unhex(padded), type_=String)
    if not ctx.sql.inet_arithmetic:
        raise ctx.fail(f"no unique address surrogate on {ctx.sql.sqlalchemy.name}")
    base = cast(literal("::", String), postgresql.INET)
    moved = base.op("+", return_type=postgresql.INET)(ctx.table.c[ctx.key_columns[0]])
    return cast(moved, ctx.type)


def _json(ctx: SurrogateContext, _surrogate: Surrogate) -> ColumnElement[Any]:
    return _json_text(ctx, "{}")


def _array(ctx: SurrogateContext, _surrogate: Surrogate) -> ColumnElement[Any]:
    return _typed(ctx, "{}")


def _first(ctx: SurrogateContext, _surrogate: Surrogate) -> ColumnElement[Any]:
    labels = ctx.info.enum_values
    if not labels:
        raise ctx.fail("the enum's labels could not be reflected; name a `constant`")
    return literal(labels[0], ctx.type)


def _binary(ctx: SurrogateContext, _surrogate: Surrogate) -> ColumnElement[Any]:
    if ctx.unique:
        return _unique_binary(ctx)
    return literal(b"", ctx.type)


def _unique_binary(ctx: SurrogateContext) -> ColumnElement[Any]:
    return ctx.sql.as_binary(_key_text(ctx), ctx.type)


def _false(ctx: SurrogateContext, _surrogate: Surrogate) -> ColumnElement[Any]:
    return literal(False, ctx.type)


_UNIQUE_BY_KIND: dict[str, Callable[[SurrogateContext], ColumnElement[Any]]] = {
    "integer": _negated_key,
    "number": _negated_key,
    "uuid": lambda ctx: _uuid(ctx, Surrogate(kind="uuid")),
    "inet": _unique_ip,
    "cidr": _unique_ip,
    "binary": _unique_binary,
}

SURROGATES: dict[str, SurrogateFactory] = {
    "null": _null,
    "redacted": _redacted,
    "email": _email,
    "unique": _unique,
    "hash": _hash,
    "constant": _constant,
    "zero": _zero,
    "epoch": _epoch,
    "false": _false,
    "uuid": _uuid,
    "json": _json,
    "array": _array,
    "ip": _ip,
    "first": _first,
    "binary": _binary,
}
"""Every named surrogate (the manifest's ``SurrogateKind``); ``constant`` takes a ``value``."""


def parse_surrogate(spec: str | Surrogate | None) -> Surrogate | None:
    """A manifest surrogate from its short form (``unique``, ``constant:n/a``); None: the default.

    Raises:
        SurrogateError: the name is not a known surrogate.
    """
    if spec is None or isinstance(spec, Surrogate):
        return spec
    name, colon, arg = spec.partition(":")
    name = name.strip().lower()
    if name == "default":
        return None
    if name not in SURROGATES:
        raise SurrogateError(f"unknown surrogate '{name}' (known: {', '.join(sorted(SURROGATES))})")
    return Surrogate(kind=name, value=arg if colon else None)  # type: ignore[arg-type]


def resolved_surrogate(ctx: SurrogateContext, spec: str | Surrogate | None) -> Surrogate:
    """The surrogate written into ``ctx.column``: the manifest's, else the type-aware default.

    Raises:
        SurrogateError: unknown, or it does not fit the column's type and constraints (the same
            rules validation applies, so a manifest that validated never fails here).
    """
    try:
        surrogate = parse_surrogate(spec)
    except ValueError as exc:
        raise ctx.fail(str(exc)) from exc
    if surrogate is None:
        surrogate = default_surrogate(ctx.info, unique=ctx.unique)
    problem = surrogate_problem(surrogate, ctx.info, unique=ctx.unique, key=ctx.key_infos)
    if problem is not None:
        raise SurrogateError(f"column '{ctx.table.name}.{ctx.column}' {problem.message}")
    return surrogate


def surrogate_expression(ctx: SurrogateContext, spec: str | Surrogate | None) -> ColumnElement[Any]:
    """The SQL expression replacing ``ctx.column`` for the surrogate ``spec`` (None: default).

    Raises:
        SurrogateError: the surrogate cannot honour the column's type or constraints.
    """
    surrogate = resolved_surrogate(ctx, spec)
    return SURROGATES[surrogate.kind](ctx, surrogate)


def surrogate_label(surrogate: Surrogate) -> str:
    """How plans and messages name a surrogate (``unique``, ``constant:n/a``)."""
    if surrogate.kind != "constant":
        return surrogate.kind
    value = surrogate.value
    shown = json.dumps(value) if isinstance(value, dict | list | bool) else str(value)
    return f"constant:{shown}"


def key_text_for(values: Sequence[Any]) -> str:
    """How a row key reads as text in the surrogates (composite keys joined by ``.``)."""
    return KEY_SEPARATOR.join(str(v) for v in values)
