"""Surrogate values for anonymized columns, computed in SQL per row and per dialect.

A surrogate is a SQLAlchemy Core expression evaluated by the target for every anonymized row,
so a table is anonymized by one ``UPDATE ... SET col = <surrogate>`` statement, never row by row.
Every surrogate keeps the column's constraints holding:

* NOT NULL: only ``null`` writes NULL, and it is refused on a NOT NULL column.
* UNIQUE: values of unique columns are derived from the row's primary key
  (``'erased-' || id || '@invalid.example'``), so two anonymized rows never collide, and the
  reserved ``.invalid``/``.example`` domains never collide with a real address.
* length: the value fits the declared length; when the long form might not (short columns), a
  ``CASE`` falls back to a shorter form of the same key (``id || '@x.invalid'``).
* CHECK: numbers become 0, dates a fixed epoch; a column whose CHECK refuses those takes
  ``constant:<value>`` in the manifest.

Named surrogates a manifest may pick per column: ``default`` (type-aware), ``null``,
``redacted``, ``email``, ``unique``, ``hash``, ``constant:<value>``, ``zero``, ``epoch``.

``hash`` is a real HMAC-SHA256 of the original value, computed in SQL without extensions: the
inner and outer pads of the key are bound as parameters, and the database only needs SHA-256
(PostgreSQL ``sha256()``, MariaDB/MySQL ``SHA2()``, SQLite a function registered on the
connection by :func:`install_sqlite_functions`). pgcrypto's ``hmac()`` is therefore never
required. The key is derived from the service's audit key, so equal values hash equally
within a deployment and nobody without the key can test a guess.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Time,
    Uuid,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
)
from sqlalchemy import types as sqltypes
from sqlalchemy.sql.elements import ColumnElement

__all__ = (
    "EMAIL_LONG",
    "EMAIL_SHORT",
    "EPOCH",
    "SURROGATES",
    "HashKey",
    "SurrogateContext",
    "SurrogateError",
    "default_surrogate_name",
    "hash_key_from_secret",
    "install_sqlite_functions",
    "key_text_for",
    "parse_surrogate",
    "placeholder_bind",
    "surrogate_expression",
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""The fixed instant dates and timestamps are anonymized to."""
MYSQL_TIMESTAMP_EPOCH = datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC).replace(tzinfo=None)
"""MariaDB/MySQL ``TIMESTAMP`` starts one second after the epoch."""
EMAIL_LONG = ("erased-", "@invalid.example")
"""Prefix and suffix of the usual e-mail surrogate: ``erased-42@invalid.example``."""
EMAIL_SHORT = ("", "@x.invalid")
"""The compact form used when the long one does not fit the column: ``42@x.invalid``."""
UNIQUE_LONG = ("erased-", "")
UNIQUE_SHORT = ("~", "")
REDACTED = "redacted"
HASH_KEY_LABEL = "lethe-erasure-surrogate-hash-v1"
SQLITE_HMAC_FUNCTION = "lethe_hmac_sha256"
KEY_SEPARATOR = "."
WIDE_KEY_TEXT = 40
"""Keys are assumed to read as at most this many characters (a BIGINT needs 20)."""
_EMAILISH = ("email", "e_mail", "mail")


class SurrogateError(ValueError):
    """A surrogate cannot honour a column's type or constraints; the message names the column."""


@dataclass(frozen=True)
class HashKey:
    """The key of the ``hash`` surrogate, as HMAC inner/outer pads bound into SQL."""

    key: bytes

    @property
    def inner_pad(self) -> bytes:
        """``K xor ipad`` (the key padded to the SHA-256 block of 64 bytes)."""
        return bytes(b ^ 0x36 for b in self.key.ljust(64, b"\x00"))

    @property
    def outer_pad(self) -> bytes:
        """``K xor opad``."""
        return bytes(b ^ 0x5C for b in self.key.ljust(64, b"\x00"))

    def digest(self, value: str) -> str:
        """What the SQL computes for ``value`` (hex HMAC-SHA256), for tests and verification."""
        return hmac.new(self.key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def hash_key_from_secret(secret: str) -> HashKey:
    """Derive the ``hash`` surrogate key from the service secret (the audit key).

    A separate derivation keeps surrogate hashes in targets unrelated to audit references.
    """
    derived = hmac.new(secret.encode("utf-8"), HASH_KEY_LABEL.encode(), hashlib.sha256).digest()
    return HashKey(derived)


BindFactory = Callable[[str, Any, Any], ColumnElement[Any]]


def placeholder_bind(name: str, _value: Any, _type: Any) -> ColumnElement[Any]:
    """A bind shown by name (``:surrogate_hash_inner_pad``): how plans display secrets."""
    return literal_column(f":{name}")


def _plain_bind(_name: str, value: Any, type_: Any) -> ColumnElement[Any]:
    return literal(value, type_)


@dataclass(frozen=True)
class SurrogateContext:
    """Everything a surrogate needs to know about the column it replaces.

    Attributes:
        table: the (reflected) table being updated; surrogates may read its other columns.
        column: the column name.
        key_columns: the row key the unique forms derive from (the primary key).
        dialect: ``postgresql``, ``mysql`` (MariaDB too) or ``sqlite``.
        unique: whether the column alone must be unique.
        hash_key: key of the ``hash`` surrogate (None: ``hash`` is unavailable).
        secret_bind: builds the bind of a secret (the hash pads); the plan renders it as a name.
    """

    table: Any
    column: str
    key_columns: tuple[str, ...]
    dialect: str
    unique: bool = False
    hash_key: HashKey | None = None
    secret_bind: BindFactory = field(default=_plain_bind)

    @property
    def sql_column(self) -> Any:
        """The SQLAlchemy column being replaced."""
        return self.table.c[self.column]

    @property
    def type(self) -> Any:
        """The column's SQLAlchemy type."""
        return self.sql_column.type

    @property
    def nullable(self) -> bool:
        """Whether NULL is allowed."""
        return bool(self.sql_column.nullable) and not self.sql_column.primary_key

    @property
    def length(self) -> int | None:
        """Declared character length of a string column (None: unbounded or not a string)."""
        length = getattr(self.type, "length", None)
        return length if isinstance(self.type, sqltypes.String) and length else None

    def fail(self, why: str) -> SurrogateError:
        """An error naming the column (never a value)."""
        return SurrogateError(f"column '{self.table.name}.{self.column}': {why}")


SurrogateFactory = Callable[[SurrogateContext, str | None], ColumnElement[Any]]


# --- building blocks -----------------------------------------------------------------------


def _text(expression: Any) -> ColumnElement[str]:
    return cast(expression, String)


def _key_text(ctx: SurrogateContext) -> ColumnElement[str]:
    """The row key as text; composite keys joined by ``.``."""
    parts = [_text(ctx.table.c[name]) for name in ctx.key_columns]
    if not parts:
        raise ctx.fail("a unique surrogate needs a primary key on the table")
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + literal(KEY_SEPARATOR, String) + part
    return joined


def _char_length(ctx: SurrogateContext, expression: Any) -> ColumnElement[int]:
    if ctx.dialect == "sqlite":
        return func.length(expression)
    return func.char_length(expression)


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


def _is_text(ctx: SurrogateContext) -> bool:
    return isinstance(ctx.type, sqltypes.String) and not isinstance(ctx.type, Enum)


def _looks_like_email(ctx: SurrogateContext) -> bool:
    name = ctx.column.lower()
    return any(part in name for part in _EMAILISH)


# --- named surrogates ----------------------------------------------------------------------


def _null(ctx: SurrogateContext, _arg: str | None) -> ColumnElement[Any]:
    if not ctx.nullable:
        raise ctx.fail("NOT NULL column cannot take the `null` surrogate")
    return null()


def _email(ctx: SurrogateContext, _arg: str | None) -> ColumnElement[Any]:
    if not _is_text(ctx):
        raise ctx.fail("`email` needs a text column")
    return _keyed(ctx, EMAIL_LONG, EMAIL_SHORT)


def _unique(ctx: SurrogateContext, _arg: str | None) -> ColumnElement[Any]:
    if not _is_text(ctx):
        raise ctx.fail("`unique` needs a text column")
    return _keyed(ctx, UNIQUE_LONG, UNIQUE_SHORT)


def _redacted(ctx: SurrogateContext, _arg: str | None) -> ColumnElement[Any]:
    if not _is_text(ctx):
        raise ctx.fail("`redacted` needs a text column")
    if ctx.unique:
        return _keyed(ctx, ("redacted-", ""), UNIQUE_SHORT)
    text = REDACTED[: ctx.length] if ctx.length else REDACTED
    return literal(text, String)


def _hash(ctx: SurrogateContext, _arg: str | None) -> ColumnElement[Any]:
    if not _is_text(ctx):
        raise ctx.fail("`hash` needs a text column")
    if ctx.hash_key is None:
        raise ctx.fail("`hash` needs the service secret (LETHE_AUDIT_KEY)")
    value = _text(ctx.sql_column)
    digest = _hmac_sql(ctx, ctx.hash_key, value)
    if ctx.length is not None and ctx.length < 64:
        if ctx.unique and ctx.length < 16:
            raise ctx.fail(f"VARCHAR({ctx.length}) is too short for a unique hash")
        return func.substr(digest, 1, ctx.length)
    return digest


def _hmac_sql(ctx: SurrogateContext, key: HashKey, value: ColumnElement[str]) -> ColumnElement[str]:
    """HMAC-SHA256(key, value) as lower-case hex, computed by the target database."""
    inner = ctx.secret_bind("surrogate_hash_inner_pad", key.inner_pad, LargeBinary)
    outer = ctx.secret_bind("surrogate_hash_outer_pad", key.outer_pad, LargeBinary)
    if ctx.dialect == "postgresql":
        message = func.convert_to(value, literal("UTF8", String))
        inner_hash = func.sha256(inner.op("||", return_type=LargeBinary)(message))
        outer_hash = func.sha256(outer.op("||", return_type=LargeBinary)(inner_hash))
        return func.encode(outer_hash, literal("hex", String), type_=String)
    if ctx.dialect == "mysql":  # asyncmy sends bytes as text: bind hex, decode in SQL
        inner = func.unhex(ctx.secret_bind("surrogate_hash_inner_pad", key.inner_pad.hex(), String))
        outer = func.unhex(ctx.secret_bind("surrogate_hash_outer_pad", key.outer_pad.hex(), String))
        inner_hash = func.unhex(func.sha2(func.concat(inner, value), 256))
        return func.lower(func.sha2(func.concat(outer, inner_hash), 256), type_=String)
    if ctx.dialect == "sqlite":
        hmac_function: ColumnElement[str] = getattr(func, SQLITE_HMAC_FUNCTION)(
            inner, outer, value, type_=String
        )
        return hmac_function
    raise ctx.fail(f"`hash` is not supported on {ctx.dialect}")


def _constant(ctx: SurrogateContext, arg: str | None) -> ColumnElement[Any]:
    if arg is None:
        raise ctx.fail("`constant` needs a value: `constant:<value>`")
    if ctx.unique:
        raise ctx.fail("a UNIQUE column cannot take a constant surrogate")
    value = _coerce_constant(ctx, arg)
    if _is_text(ctx) and ctx.length is not None and len(arg) > ctx.length:
        raise ctx.fail(f"constant is longer than VARCHAR({ctx.length})")
    return literal(value, ctx.type)


def _coerce_constant(ctx: SurrogateContext, arg: str) -> Any:
    kind = ctx.type
    try:
        if isinstance(kind, Boolean):
            return arg.strip().lower() in ("1", "true", "yes")
        if isinstance(kind, Integer):
            return int(arg)
        if isinstance(kind, Numeric):
            return float(arg) if kind.asdecimal is False else Decimal(arg)
        if isinstance(kind, DateTime):
            return datetime.fromisoformat(arg)
        if isinstance(kind, Date):
            return date.fromisoformat(arg)
    except ValueError as exc:
        raise ctx.fail("constant does not parse as the column's type") from exc
    return arg


def _zero(ctx: SurrogateContext, _arg: str | None) -> ColumnElement[Any]:
    if not isinstance(ctx.type, Integer | Numeric):
        raise ctx.fail("`zero` needs a numeric column")
    if ctx.unique:
        return _negated_key(ctx)
    return literal(0, ctx.type)


def _negated_key(ctx: SurrogateContext) -> ColumnElement[Any]:
    """``-id``: unique numbers for a unique numeric column (single integer key only)."""
    key = ctx.table.c[ctx.key_columns[0]] if len(ctx.key_columns) == 1 else None
    if key is None or not isinstance(key.type, Integer):
        raise ctx.fail("a unique numeric surrogate needs a single integer primary key")
    negated: ColumnElement[Any] = literal(0, Integer) - key
    return negated


def _epoch(ctx: SurrogateContext, _arg: str | None) -> ColumnElement[Any]:
    if ctx.unique:
        raise ctx.fail("a UNIQUE date column cannot take the epoch surrogate")
    kind = ctx.type
    if isinstance(kind, DateTime):
        if ctx.dialect == "mysql" and isinstance(kind, sqltypes.TIMESTAMP):
            return literal(MYSQL_TIMESTAMP_EPOCH, kind)
        moment = EPOCH if kind.timezone else EPOCH.replace(tzinfo=None)
        return literal(moment, kind)
    if isinstance(kind, Date):
        return literal(EPOCH.date(), kind)
    if isinstance(kind, Time):
        return literal(time(0, 0), kind)
    raise ctx.fail("`epoch` needs a date, time or timestamp column")


def _uuid(ctx: SurrogateContext, _arg: str | None) -> ColumnElement[Any]:
    """A deterministic UUID derived from the row key (md5 of ``'erased:' || key``)."""
    seed = literal("erased:", String) + _key_text(ctx)
    if ctx.dialect == "postgresql":
        return cast(func.md5(seed), ctx.type)
    if ctx.dialect == "mysql":
        digest = func.md5(seed)
        parts = [func.substr(digest, start, size) for start, size in _UUID_PARTS]
        return func.concat_ws(literal("-", String), *parts, type_=String)
    raise ctx.fail(f"no UUID surrogate on {ctx.dialect}; use `unique` on a text column")


_UUID_PARTS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))


def _json(ctx: SurrogateContext, _arg: str | None) -> ColumnElement[Any]:
    if ctx.nullable:
        return null()
    if ctx.dialect == "mysql":
        return func.json_object(type_=ctx.type)
    if ctx.dialect == "sqlite":
        return literal("{}", String)
    return cast(literal("{}", String), ctx.type)


def _binary(ctx: SurrogateContext, _arg: str | None) -> ColumnElement[Any]:
    if ctx.unique:
        raise ctx.fail("no surrogate for a UNIQUE binary column; choose `null` or delete the row")
    if ctx.nullable:
        return null()
    return literal(b"", ctx.type)


def _false(ctx: SurrogateContext, _arg: str | None) -> ColumnElement[Any]:
    if not isinstance(ctx.type, Boolean):
        raise ctx.fail("`false` needs a boolean column")
    if ctx.unique:
        raise ctx.fail("no surrogate keeps a UNIQUE boolean unique")
    return literal(False, ctx.type)


def _default(ctx: SurrogateContext, arg: str | None) -> ColumnElement[Any]:
    return SURROGATES[default_surrogate_name(ctx)](ctx, arg)


SURROGATES: dict[str, SurrogateFactory] = {
    "default": _default,
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
    "binary": _binary,
}
"""Every named surrogate; ``constant`` takes its value after a colon (``constant:unknown``)."""


def default_surrogate_name(ctx: SurrogateContext) -> str:
    """The type-aware default: what an anonymized column gets when the manifest names nothing.

    Text: an e-mail-shaped unique value for columns named like e-mail, a key-derived value for
    other unique columns, ``redacted`` otherwise; numbers ``zero`` (``-id`` when unique);
    booleans false; dates and timestamps the epoch; UUIDs a key-derived UUID; JSON ``{}`` (NULL
    when nullable); binary empty (NULL when nullable).
    """
    kind = ctx.type
    if isinstance(kind, sqltypes.String) and not isinstance(kind, Enum):
        if _looks_like_email(ctx):
            return "email"
        return "unique" if ctx.unique else "redacted"
    type_name = type(kind).__name__.upper()
    for types, name in _DEFAULTS:
        if isinstance(kind, types) or type_name in _NAMED_DEFAULTS.get(name, ()):
            return name
    return "null"


_DEFAULTS: tuple[tuple[Any, str], ...] = (
    (Enum, "null"),
    (Boolean, "false"),
    (Integer | Numeric, "zero"),
    (DateTime | Date | Time, "epoch"),
    (Uuid, "uuid"),
    (JSON, "json"),
    (LargeBinary | sqltypes._Binary, "binary"),
)
_NAMED_DEFAULTS = {"uuid": ("UUID",), "json": ("JSON", "JSONB")}


def parse_surrogate(spec: str | None) -> tuple[str, str | None]:
    """Split a manifest surrogate name into name and argument (``constant:n/a``).

    Raises:
        SurrogateError: the name is not in :data:`SURROGATES`.
    """
    if spec is None:
        return "default", None
    name, _, arg = spec.partition(":")
    name = name.strip().lower()
    if name not in SURROGATES:
        raise SurrogateError(f"unknown surrogate '{name}' (known: {', '.join(sorted(SURROGATES))})")
    return name, (arg if _ else None)


def surrogate_expression(ctx: SurrogateContext, spec: str | None) -> ColumnElement[Any]:
    """The SQL expression replacing ``ctx.column`` for the surrogate ``spec`` (None: default).

    Raises:
        SurrogateError: the surrogate cannot honour the column's type or constraints.
    """
    name, arg = parse_surrogate(spec)
    factory = SURROGATES[name]
    return factory(ctx, arg)


def _sqlite_hmac(inner_pad: bytes, outer_pad: bytes, value: str | None) -> str | None:
    if value is None:
        return None
    message = str(value).encode("utf-8")
    inner = hashlib.sha256(bytes(inner_pad) + message).digest()
    return hashlib.sha256(bytes(outer_pad) + inner).hexdigest()


def install_sqlite_functions(dbapi_connection: Any) -> None:
    """Register the SQL functions surrogates use on a SQLite connection (HMAC for ``hash``).

    Takes a ``sqlite3`` connection or SQLAlchemy's aiosqlite adapter (call it inside
    ``run_sync`` or a ``connect`` event, where the adapter can wait on the driver).
    """
    dbapi_connection.create_function(SQLITE_HMAC_FUNCTION, 3, _sqlite_hmac, deterministic=True)


def key_text_for(values: Sequence[Any]) -> str:
    """How a row key reads as text in the surrogates (composite keys joined by ``.``)."""
    return KEY_SEPARATOR.join(str(v) for v in values)
