"""What differs between the databases Lethe reads and writes: one object per kind of database.

:func:`dialect_of` takes a connection, an engine, a session's bind or a SQLAlchemy dialect and
returns :class:`PostgreSQL`, :class:`MariaDB`, :class:`MySQL` or :class:`SQLite` (the one place
MariaDB is told apart from MySQL). Engine code asks it questions (``dialect.named_schemas``) or
has it build the SQL that differs (``dialect.md5_hex(value)``) instead of comparing dialect names.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    Integer,
    LargeBinary,
    String,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect as SqlalchemyDialect
from sqlalchemy.exc import CompileError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import Select

__all__ = (
    "SQLITE_HMAC_FUNCTION",
    "SQLITE_MATCH_FUNCTION",
    "SQLITE_MD5_FUNCTION",
    "SQLITE_REPLACE_FUNCTION",
    "Dialect",
    "DialectLike",
    "MariaDB",
    "MySQL",
    "PostgreSQL",
    "SQLite",
    "as_dialect",
    "dialect_of",
)

SQLITE_HMAC_FUNCTION = "lethe_hmac_sha256"
SQLITE_MD5_FUNCTION = "lethe_md5"
SQLITE_REPLACE_FUNCTION = "lethe_regexp_replace"
SQLITE_MATCH_FUNCTION = "lethe_regexp_match"
"""Functions registered on SQLite connections (surrogates, scrubbing), called by these names."""


class Dialect:
    """One kind of database, bound to the SQLAlchemy dialect of a connection (for rendering).

    Subclasses answer with class attributes where a fact is fixed, methods where SQL differs.
    """

    name: ClassVar[str]
    """``postgresql``, ``mariadb``, ``mysql`` or ``sqlite``."""
    named_schemas: ClassVar[bool] = True
    """Whether the database has named schemas (SQLite has one unnamed schema per file)."""
    search_path: ClassVar[bool] = False
    """Whether unqualified names resolve through a ``search_path`` (PostgreSQL)."""
    embedded: ClassVar[bool] = False
    """In-process (SQLite): SQL functions Lethe calls are registered on each connection."""
    snapshot_isolation: ClassVar[str | None] = "REPEATABLE READ"
    """The isolation level giving one consistent snapshot across tables (None: the default)."""
    materialises_same_table: ClassVar[bool] = False
    """An UPDATE/DELETE may not read its own table in a subquery unless it is a derived table
    (MySQL/MariaDB error 1093)."""
    compares_padded: ClassVar[bool] = False
    """String equality ignores case and trailing spaces (MySQL/MariaDB collations)."""
    timestamp_floor: ClassVar[datetime | None] = None
    """The earliest ``TIMESTAMP`` value (MySQL/MariaDB: one second after the epoch)."""
    casts_text_literals: ClassVar[bool] = False
    """Typed literals (inet, arrays, JSON, uuid) are written as text cast to the column's type."""
    inet_arithmetic: ClassVar[bool] = False
    """Addresses support ``inet + integer`` (PostgreSQL)."""
    listens: ClassVar[bool] = False
    """``LISTEN``/``NOTIFY`` between connections (PostgreSQL)."""
    constraints_need_inspector: ClassVar[bool] = False
    """Some constraints show only through the inspector, not table reflection (SQLite inline
    UNIQUE, MariaDB column-level CHECKs of JSON columns): reflect the schema the way validation
    does."""

    def __init__(self, sqlalchemy_dialect: SqlalchemyDialect) -> None:
        self.sqlalchemy = sqlalchemy_dialect

    def __repr__(self) -> str:
        return f"<{type(self).__name__} dialect>"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    # --- reflection --------------------------------------------------------------------------

    @property
    def index_reflection_options(self) -> dict[str, Any]:
        """Keyword arguments of ``Inspector.get_indexes`` that show every unique index."""
        return {}

    @property
    def misses_inline_on_delete(self) -> bool:
        """Reflection misses ``ON DELETE`` of inline ``REFERENCES`` (SQLite: ask its pragma)."""
        return False

    @property
    def tid_range_scans(self) -> bool:
        """Rows can be addressed by physical block ranges (PostgreSQL >= 14 ``ctid`` ranges)."""
        return False

    def _fingerprint_query(self, schemas: Sequence[str]) -> Any:
        """One catalog query whose rows change whenever reflection would see something else."""
        raise NotImplementedError

    async def schema_fingerprint(self, connection: AsyncConnection, schemas: Sequence[str] = ()) -> str:
        """A digest of the catalog of the default schema and ``schemas``: tables, columns and
        their types and nullability, keys, foreign keys, CHECKs and unique indexes, in ONE query.

        Equal digests mean a reflection taken before still describes the target
        (:class:`app.engine.reflection_cache.ReflectionCache`); any DDL on those schemas changes it.
        """
        rows = (await connection.execute(self._fingerprint_query(schemas))).all()
        lines = sorted("\x1f".join("" if v is None else str(v) for v in row) for row in rows)
        return hashlib.sha256("\x00".join([self.name, *schemas, *lines]).encode()).hexdigest()

    # --- subject conditions ------------------------------------------------------------------

    def same_table_rows(self, rows: Select[Any]) -> Select[Any]:
        """``rows`` as a subquery an UPDATE/DELETE of the same table may read."""
        if not self.materialises_same_table:
            return rows
        sub = rows.subquery()
        return select(*sub.c).distinct()

    def equals_exactly(self, column: ColumnElement[Any], value: str) -> ColumnElement[bool]:
        """``column = value`` byte for byte (the plain equality kept so an index stays usable)."""
        if self.compares_padded:
            return and_(column == value, cast(column, LargeBinary) == cast(literal(value), LargeBinary))
        return column == value

    # --- functions used by surrogates ----------------------------------------------------------

    def char_length(self, value: Any) -> ColumnElement[int]:
        """Length of a string in characters."""
        return func.char_length(value)

    def typed_text(self, value: str, type_: Any) -> ColumnElement[Any]:
        """A literal of ``type_`` written as text (the database parses it)."""
        if self.casts_text_literals:
            return cast(literal(value, String), type_)
        return literal(value, String)

    def as_binary(self, value: ColumnElement[str], type_: Any) -> ColumnElement[Any]:
        """A string's UTF-8 bytes."""
        return cast(value, LargeBinary)

    def md5_hex(self, value: ColumnElement[str]) -> ColumnElement[str]:
        """Hex MD5 of ``value``."""
        return func.md5(value, type_=String)

    def code_point(self, value: ColumnElement[str]) -> ColumnElement[int]:
        """The code point of a one-character string."""
        return func.ascii(value, type_=Integer)

    def hmac_sha256(
        self, inner_pad: bytes, outer_pad: bytes, value: ColumnElement[str], bind: Any
    ) -> ColumnElement[str]:
        """HMAC-SHA256 as lower-case hex from the key's pads (bound through ``bind(name, value,
        type)``), computed by the database with SHA-256 alone.

        Raises:
            ValueError: the database has no SHA-256 here.
        """
        raise ValueError(f"`hash` is not supported on {self.sqlalchemy.name}")

    # --- scrubbing (regular expressions) -------------------------------------------------------

    def json_as_text(self, column: Any) -> ColumnElement[Any]:
        """A JSON column read as its text."""
        result: ColumnElement[Any] = column
        return result

    def regex_pattern(self, pattern: str, casefold: bool) -> str:
        """The pattern as :meth:`regex_matches` and :meth:`regex_replace` take it."""
        return pattern

    def regex_matches(self, value: ColumnElement[Any], pattern: Any, casefold: bool) -> Any:
        """``value`` matches the bound regular expression."""
        flags = "i" if casefold else ""
        return func.coalesce(getattr(func, SQLITE_MATCH_FUNCTION)(value, pattern, flags), 0) == 1

    def regex_replace(
        self, value: ColumnElement[Any], pattern: Any, replacement: Any, casefold: bool
    ) -> ColumnElement[Any]:
        """Every match of the bound regular expression in ``value`` replaced."""
        result: ColumnElement[Any] = getattr(func, SQLITE_REPLACE_FUNCTION)(
            value, pattern, replacement, "i" if casefold else ""
        )
        return result

    # --- batch limits --------------------------------------------------------------------------

    async def set_timeouts(self, connection: AsyncConnection, lock_ms: int, statement_ms: int) -> list[Any]:
        """Bound how long the transaction may wait for locks and run, in this database's terms.

        Returns what session-level settings were before, for :meth:`reset_timeouts`.
        """
        return []

    async def reset_timeouts(self, connection: AsyncConnection, saved: Sequence[Any]) -> None:
        """Session settings outlive the transaction: give the pooled connection back as it was."""

    def timeout_kind(self, error: DBAPIError) -> str | None:
        """``lock`` or ``statement`` when ``error`` is one of :meth:`set_timeouts`' limits."""
        return None

    # --- rendering -----------------------------------------------------------------------------

    def render(self, statement: Any) -> str:
        """The statement as this database runs it, values inlined where they can be rendered."""
        try:
            compiled = statement.compile(dialect=self.sqlalchemy, compile_kwargs={"literal_binds": True})
        except (CompileError, NotImplementedError, TypeError):
            compiled = statement.compile(dialect=self.sqlalchemy)
        return str(compiled).strip()

    def render_line(self, statement: Any) -> str:
        """:meth:`render` on one line (plans)."""
        return " ".join(self.render(statement).split())

    # --- the service store ---------------------------------------------------------------------

    def insert(self, table: Any) -> Any:
        """An ``INSERT`` with ``ON CONFLICT`` clauses (PostgreSQL and SQLite stores)."""
        raise ValueError(f"no upsert on {self.sqlalchemy.name}")


class PostgreSQL(Dialect):
    """PostgreSQL."""

    name = "postgresql"
    search_path = True
    casts_text_literals = True
    inet_arithmetic = True
    listens = True

    def _fingerprint_query(self, schemas: Sequence[str]) -> Any:
        return text(_PG_FINGERPRINT).bindparams(bindparam("named", list(schemas), type_=ARRAY(Text)))

    @property
    def tid_range_scans(self) -> bool:
        version = getattr(self.sqlalchemy, "server_version_info", None) or (0,)
        return bool(version >= (14,))

    def as_binary(self, value: ColumnElement[str], type_: Any) -> ColumnElement[Any]:
        return func.convert_to(value, literal("UTF8", String), type_=type_)

    def hmac_sha256(
        self, inner_pad: bytes, outer_pad: bytes, value: ColumnElement[str], bind: Any
    ) -> ColumnElement[str]:
        inner = bind("surrogate_hash_inner_pad", inner_pad, LargeBinary)
        outer = bind("surrogate_hash_outer_pad", outer_pad, LargeBinary)
        message = func.convert_to(value, literal("UTF8", String))
        inner_hash = func.sha256(inner.op("||", return_type=LargeBinary)(message))
        outer_hash = func.sha256(outer.op("||", return_type=LargeBinary)(inner_hash))
        return func.encode(outer_hash, literal("hex", String), type_=String)

    def json_as_text(self, column: Any) -> ColumnElement[Any]:
        return cast(column, Text)

    def regex_matches(self, value: ColumnElement[Any], pattern: Any, casefold: bool) -> Any:
        return value.op("~*" if casefold else "~")(pattern)

    def regex_replace(
        self, value: ColumnElement[Any], pattern: Any, replacement: Any, casefold: bool
    ) -> ColumnElement[Any]:
        flags = "gi" if casefold else "g"
        result: ColumnElement[Any] = func.regexp_replace(value, pattern, replacement, flags)
        return result

    async def set_timeouts(self, connection: AsyncConnection, lock_ms: int, statement_ms: int) -> list[Any]:
        await connection.execute(  # SET LOCAL: ends with the transaction
            select(
                func.set_config("lock_timeout", f"{lock_ms}ms", True),
                func.set_config("statement_timeout", f"{statement_ms}ms", True),
            )
        )
        return []

    def timeout_kind(self, error: DBAPIError) -> str | None:
        state = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        return {"55P03": "lock", "57014": "statement"}.get(str(state))  # lock_not_available, query_canceled

    def insert(self, table: Any) -> Any:
        return postgresql.insert(table)


class MySQL(Dialect):
    """MySQL (and what MariaDB shares with it)."""

    name = "mysql"
    materialises_same_table = True
    compares_padded = True
    timestamp_floor = datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC).replace(tzinfo=None)
    _session_timeouts: ClassVar[tuple[str, ...]] = ("innodb_lock_wait_timeout",)
    _lock_errors: ClassVar[frozenset[int]] = frozenset({1205, 1213})  # lock wait timeout, deadlock
    _statement_errors: ClassVar[frozenset[int]] = frozenset({1969, 3024})  # MariaDB, MySQL

    def _fingerprint_query(self, schemas: Sequence[str]) -> Any:
        return text(_MYSQL_FINGERPRINT).bindparams(bindparam("named", list(schemas), expanding=True))

    def hmac_sha256(
        self, inner_pad: bytes, outer_pad: bytes, value: ColumnElement[str], bind: Any
    ) -> ColumnElement[str]:
        # asyncmy sends bytes as text: bind hex, decode in SQL
        inner = func.unhex(bind("surrogate_hash_inner_pad", inner_pad.hex(), String))
        outer = func.unhex(bind("surrogate_hash_outer_pad", outer_pad.hex(), String))
        inner_hash = func.unhex(func.sha2(func.concat(inner, value), 256))
        return func.lower(func.sha2(func.concat(outer, inner_hash), 256), type_=String)

    def regex_pattern(self, pattern: str, casefold: bool) -> str:
        return ("(?i)" if casefold else "(?-i)") + pattern

    def regex_matches(self, value: ColumnElement[Any], pattern: Any, casefold: bool) -> Any:
        return value.op("REGEXP")(pattern)

    def regex_replace(
        self, value: ColumnElement[Any], pattern: Any, replacement: Any, casefold: bool
    ) -> ColumnElement[Any]:
        result: ColumnElement[Any] = func.regexp_replace(value, pattern, replacement)
        return result

    async def set_timeouts(self, connection: AsyncConnection, lock_ms: int, statement_ms: int) -> list[Any]:
        read = "SELECT " + ", ".join(f"@@SESSION.{name}" for name in self._session_timeouts)
        saved = list((await connection.execute(text(read))).one())
        wait = max(1, math.ceil(lock_ms / 1000))
        await connection.execute(text("SET SESSION innodb_lock_wait_timeout = :wait"), {"wait": wait})
        return saved

    async def reset_timeouts(self, connection: AsyncConnection, saved: Sequence[Any]) -> None:
        if saved:
            await connection.execute(text("SET SESSION innodb_lock_wait_timeout = :v"), {"v": saved[0]})

    def timeout_kind(self, error: DBAPIError) -> str | None:
        args = getattr(error.orig, "args", ())
        errno = args[0] if args and isinstance(args[0], int) else None
        if errno in self._lock_errors:
            return "lock"
        if errno in self._statement_errors:
            return "statement"
        return None


class MariaDB(MySQL):
    """MariaDB: MySQL's SQL, plus ``max_statement_time`` for a per-statement limit."""

    name = "mariadb"
    constraints_need_inspector = True
    _session_timeouts = ("innodb_lock_wait_timeout", "max_statement_time")

    async def set_timeouts(self, connection: AsyncConnection, lock_ms: int, statement_ms: int) -> list[Any]:
        saved = await super().set_timeouts(connection, lock_ms, statement_ms)
        seconds = statement_ms / 1000
        await connection.execute(text("SET SESSION max_statement_time = :seconds"), {"seconds": seconds})
        return saved

    async def reset_timeouts(self, connection: AsyncConnection, saved: Sequence[Any]) -> None:
        await super().reset_timeouts(connection, saved)
        if saved:
            await connection.execute(text("SET SESSION max_statement_time = :v"), {"v": saved[1]})


class SQLite(Dialect):
    """SQLite (files, one writer at a time)."""

    name = "sqlite"
    constraints_need_inspector = True
    named_schemas = False
    embedded = True
    snapshot_isolation = None

    def _fingerprint_query(self, schemas: Sequence[str]) -> Any:
        return text("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")

    @property
    def index_reflection_options(self) -> dict[str, Any]:
        return {"include_auto_indexes": True}  # inline UNIQUE shows only as an automatic index

    @property
    def misses_inline_on_delete(self) -> bool:
        return True

    def char_length(self, value: Any) -> ColumnElement[int]:
        return func.length(value)

    def md5_hex(self, value: ColumnElement[str]) -> ColumnElement[str]:
        md5: ColumnElement[str] = getattr(func, SQLITE_MD5_FUNCTION)(value, type_=String)
        return md5

    def code_point(self, value: ColumnElement[str]) -> ColumnElement[int]:
        return func.unicode(value, type_=Integer)

    def hmac_sha256(
        self, inner_pad: bytes, outer_pad: bytes, value: ColumnElement[str], bind: Any
    ) -> ColumnElement[str]:
        inner = bind("surrogate_hash_inner_pad", inner_pad, LargeBinary)
        outer = bind("surrogate_hash_outer_pad", outer_pad, LargeBinary)
        digest: ColumnElement[str] = getattr(func, SQLITE_HMAC_FUNCTION)(inner, outer, value, type_=String)
        return digest

    async def set_timeouts(self, connection: AsyncConnection, lock_ms: int, statement_ms: int) -> list[Any]:
        saved = [int((await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar() or 0)]
        await connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(lock_ms)}")
        return saved

    async def reset_timeouts(self, connection: AsyncConnection, saved: Sequence[Any]) -> None:
        if saved:
            await connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(saved[0])}")

    def timeout_kind(self, error: DBAPIError) -> str | None:
        return "lock" if "database is locked" in str(error.orig) else None

    def insert(self, table: Any) -> Any:
        return sqlite.insert(table)


_PG_FINGERPRINT = """
SELECT md5(coalesce(string_agg(item, E'\\n' ORDER BY item), '')), current_schemas(false)::text FROM (
  SELECT concat_ws('|', 'a', c.oid, n.nspname, c.relname, c.relkind, a.attnum, a.attname, a.atttypid,
                   a.atttypmod, a.attnotnull, a.attidentity, a.attgenerated) AS item
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    AND n.nspname = ANY(current_schemas(false) || :named)
  UNION ALL
  SELECT concat_ws('|', 'k', o.oid, o.conname, o.contype, o.conrelid, o.confrelid, o.conkey::text,
                   o.confkey::text, o.confdeltype, o.confupdtype, md5(pg_get_constraintdef(o.oid)))
  FROM pg_constraint o JOIN pg_namespace n ON n.oid = o.connamespace
  WHERE n.nspname = ANY(current_schemas(false) || :named)
  UNION ALL
  SELECT concat_ws('|', 'i', i.indexrelid, i.indrelid, i.indisunique, i.indkey::text,
                   pg_get_expr(i.indpred, i.indrelid))
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = ANY(current_schemas(false) || :named)
  UNION ALL
  SELECT concat_ws('|', 'e', e.enumtypid, e.enumsortorder, e.enumlabel) FROM pg_enum e
) AS catalog
"""
"""PostgreSQL's schema fingerprint: one md5 over columns, constraints, indexes and enum labels of
the search_path's schemas and the named ones, computed in the server (one row back)."""

_MYSQL_FINGERPRINT = """
SELECT 'c', TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_TYPE, IS_NULLABLE,
       COLUMN_KEY, EXTRA
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() OR TABLE_SCHEMA IN :named
UNION ALL
SELECT 'k', k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION, k.COLUMN_NAME,
       k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME
FROM information_schema.KEY_COLUMN_USAGE k
WHERE k.TABLE_SCHEMA = DATABASE() OR k.TABLE_SCHEMA IN :named
UNION ALL
SELECT 'r', CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, DELETE_RULE, UPDATE_RULE,
       UNIQUE_CONSTRAINT_NAME, REFERENCED_TABLE_NAME, NULL
FROM information_schema.REFERENTIAL_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = DATABASE() OR CONSTRAINT_SCHEMA IN :named
UNION ALL
SELECT 'x', CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE, NULL, NULL, NULL, NULL
FROM information_schema.CHECK_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = DATABASE() OR CONSTRAINT_SCHEMA IN :named
UNION ALL
SELECT 'i', TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE, NULL, NULL
FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() OR TABLE_SCHEMA IN :named
"""
"""MySQL's and MariaDB's schema fingerprint: the rows of ``information_schema`` reflection reads
for the current database and the named ones (hashed here)."""

DialectLike = Dialect | str
"""A :class:`Dialect`, or a SQLAlchemy dialect name (``mysql`` stands for MariaDB too)."""

_BY_NAME: dict[str, tuple[type[Dialect], Any]] = {
    "postgresql": (PostgreSQL, postgresql.dialect),
    "mysql": (MySQL, mysql.dialect),
    "mariadb": (MariaDB, mysql.dialect),
    "sqlite": (SQLite, sqlite.dialect),
}


def dialect_of(bind: Any) -> Dialect:
    """The :class:`Dialect` of a connection, engine, session bind or SQLAlchemy dialect.

    MariaDB is recognised once a connection has been made (SQLAlchemy learns it then).

    Raises:
        ValueError: a database Lethe does not support.
    """
    if isinstance(bind, Dialect):
        return bind
    sqlalchemy_dialect = getattr(bind, "dialect", bind)
    name = sqlalchemy_dialect.name
    if name in ("mysql", "mariadb"):
        name = "mariadb" if getattr(sqlalchemy_dialect, "is_mariadb", False) else "mysql"
    if name not in _BY_NAME:
        raise ValueError(f"unsupported database: {name}")
    return _BY_NAME[name][0](sqlalchemy_dialect)


def as_dialect(value: DialectLike) -> Dialect:
    """A :class:`Dialect` from itself or a dialect name (rendering then uses SQLAlchemy's
    default dialect of that name, not a connection's)."""
    if isinstance(value, Dialect):
        return value
    return _named(value)


@functools.cache
def _named(name: str) -> Dialect:
    if name not in _BY_NAME:
        raise ValueError(f"unsupported database: {name}")
    kind, default = _BY_NAME[name]
    return kind(default())
