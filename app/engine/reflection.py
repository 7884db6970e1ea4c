"""Reflect a target database (every schema the manifest names) into the manifest's ``SchemaInfo``.

Table names are the manifest's: bare for the connection's default schema, ``schema.table`` for
the others (:mod:`app.manifest.names`). Every reflection of a target goes through
:func:`target_schemas` (which schemas, and the key of each table) and, for SQLAlchemy tables,
:func:`reflect_tables`; statements built on those tables name the schema of every table outside
the default one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import BLANK_SCHEMA, MetaData, Table, inspect, text
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects.mysql import INET4, INET6
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from app.engine.dialects import MariaDB, dialect_of
from app.lib.errors import ManifestInvalid, field_error
from app.manifest.names import split_table, table_key
from app.manifest.schema import CheckInfo, ColumnInfo

__all__ = (
    "TargetSchemas",
    "affinity_of",
    "check_infos",
    "column_info",
    "foreign_keys_into",
    "inspector_checks",
    "inspector_unique",
    "json_check_kind",
    "reflect_tables",
    "target_schemas",
)

_SYSTEM_SCHEMAS = frozenset(
    {"information_schema", "pg_catalog", "pg_toast", "mysql", "performance_schema", "sys"}
)


@dataclass(frozen=True)
class TargetSchemas:
    """The schemas reflected on one connection, and how their tables are named.

    ``default`` is the connection's default schema (None on SQLite, or on PostgreSQL when no
    schema of the search_path exists); ``reflected`` the schema arguments given to reflection:
    explicit names on PostgreSQL and MariaDB (the server then names the schema of every foreign
    key's table), ``None`` (``main``) on SQLite.
    """

    default: str | None
    reflected: tuple[str | None, ...]

    def key(self, schema: str | None, name: str) -> str:
        """The manifest's name of a reflected table."""
        return table_key(schema, name, self.default)

    def locate(self, key: str) -> tuple[str | None, str]:
        """The schema argument and table name behind a manifest table name."""
        schema, name = split_table(key)
        return (schema or self.default), name

    @property
    def names(self) -> list[str]:
        """The schemas by name, for messages."""
        return [s or "main" for s in self.reflected]


def _refuse_schemas(message: str, detail: str) -> ManifestInvalid:
    return ManifestInvalid(detail, errors=[field_error("connection.schemas", message)])


def _search_path(connection: Connection) -> list[str]:
    """The existing schemas of a PostgreSQL connection's search_path, in order."""
    return list(connection.execute(text("SELECT current_schemas(false)")).scalar_one() or [])


def _non_system(names: Sequence[str]) -> list[str]:
    return [n for n in names if n not in _SYSTEM_SCHEMAS and not n.startswith("pg_")]


_MARIADB_TYPES = {"inet4": INET4, "inet6": INET6}
"""MariaDB types SQLAlchemy defines but does not reflect (it would read them as NullType)."""


def _know_mariadb_types(connection: Connection) -> None:
    """Teach this connection's SQLAlchemy dialect instance (not the class) MariaDB's address types
    before reflecting."""
    dialect: Any = connection.dialect  # MySQL's dialects carry ischema_names
    known = _MARIADB_TYPES.keys() <= dialect.ischema_names.keys()
    if isinstance(dialect_of(connection), MariaDB) and not known:
        dialect.ischema_names = {**dialect.ischema_names, **_MARIADB_TYPES}


def target_schemas(
    connection: Connection, named: Sequence[str] = (), *, every: bool = False
) -> TargetSchemas:
    """The schemas to reflect: the default one, the rest of a PostgreSQL search_path, ``named``
    (``connection.schemas`` and the schemas of qualified table names), and with ``every`` all
    non-system schemas.

    Raises:
        ManifestInvalid: a named schema does not exist, or the target is SQLite (no named schemas).
    """
    _know_mariadb_types(connection)
    dialect = dialect_of(connection)
    if not dialect.named_schemas:
        if named:
            raise _refuse_schemas(
                "SQLite has no named schemas: use unqualified table names and no `connection.schemas`",
                f"SQLite has no named schemas (asked for: {', '.join(named)})",
            )
        return TargetSchemas(None, (None,))
    default = connection.dialect.default_schema_name
    existing = inspect(connection).get_schema_names() if named or every else []
    missing = [s for s in named if s not in existing]
    if missing:
        raise _refuse_schemas(
            f"schema(s) {', '.join(missing)} do not exist in the target "
            f"(it has: {', '.join(_non_system(existing)) or 'none'})",
            f"schema(s) {', '.join(missing)} named by the manifest do not exist in the target",
        )
    found: list[str] = [default] if default else []
    if dialect.search_path:
        found += _search_path(connection)
    found += named
    if every:
        found += _non_system(existing)
    return TargetSchemas(default, tuple(dict.fromkeys(found)))


@contextmanager
def _qualified_names(connection: Connection) -> Iterator[None]:
    """On PostgreSQL, reflect with an empty search_path so the server names the schema of every
    referenced table (a foreign key into another schema of the search_path would otherwise come
    back unqualified, and be taken for the default schema); the old search_path is restored."""
    if not dialect_of(connection).search_path:
        yield
        return
    old = connection.execute(text("SELECT current_setting('search_path')")).scalar_one()
    connection.execute(text("SELECT set_config('search_path', 'pg_catalog', false)"))
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        try:
            connection.execute(text("SELECT set_config('search_path', :path, false)"), {"path": old})
        except DBAPIError:  # an aborted transaction: its rollback restores the search_path too
            if not failed:
                raise


def reflect_tables(
    connection: Connection,
    named: Sequence[str] = (),
    only: Collection[str] | None = None,
    *,
    every: bool = False,
) -> tuple[dict[str, Table], TargetSchemas]:
    """SQLAlchemy tables of the target keyed by manifest table name (with those they reference).

    ``only`` limits reflection to those manifest table names (missing ones are left out);
    ``every`` reflects every non-system schema (see :func:`target_schemas`). Each schema is one
    ``MetaData.reflect``: SQLAlchemy reads columns, keys, indexes and CHECKs of all its tables in a
    few multi-table queries.

    Raises:
        ManifestInvalid: see :func:`target_schemas`.
    """
    schemas = target_schemas(connection, named, every=every)
    metadata = MetaData()
    wanted = None if only is None else [schemas.locate(key) for key in only]
    with _qualified_names(connection):
        inspector = inspect(connection)
        for schema in schemas.reflected:
            if wanted is None:  # every table (MetaData.reflect lists them itself)
                metadata.reflect(connection, schema=schema, resolve_fks=True)
                continue
            existing = set(inspector.get_table_names(schema=schema))
            names = [n for s, n in wanted if s == schema and n in existing]
            if names:
                metadata.reflect(connection, schema=schema, only=names, resolve_fks=True)
    unqualified = _default_unqualified(metadata, schemas.default)
    tables = {schemas.key(t.schema, t.name): t for t in unqualified.tables.values()}
    return tables, schemas


def _default_unqualified(metadata: MetaData, default: str | None) -> MetaData:
    """A copy of ``metadata`` whose default-schema tables carry no schema, so statements and plans
    name them as the application does (``addresses``, ``billing.invoices``)."""
    if default is None:
        return metadata

    def referred(_: Table, __: Any, ___: Any, referred_schema: str | None) -> Any:
        return BLANK_SCHEMA if referred_schema == default else referred_schema

    plain = MetaData()
    for table in metadata.tables.values():
        schema: Any = None if table.schema == default else table.schema  # None: no schema (documented)
        table.to_metadata(plain, schema=schema, referred_schema_fn=referred)
    return plain


_AFFINITIES: tuple[tuple[type[Any], str], ...] = (
    (sqltypes.Boolean, "boolean"),
    (sqltypes.Integer, "integer"),
    (sqltypes.Numeric, "number"),
    (sqltypes.DateTime, "datetime"),
    (sqltypes.Date, "date"),
    (sqltypes.Time, "other"),
    (sqltypes.Interval, "other"),
    (sqltypes.Enum, "text"),
    (sqltypes.String, "text"),
    (sqltypes.LargeBinary, "binary"),
    (sqltypes._Binary, "binary"),  # BINARY/VARBINARY share only this base
)


def affinity_of(column_type: Any) -> str:
    """The manifest's coarse type of a reflected SQLAlchemy type (see ``ColumnInfo``)."""
    for base, affinity in _AFFINITIES:
        if isinstance(column_type, base):
            return affinity
    return "other"


def _type_name(column_type: Any) -> str:
    name = getattr(column_type, "__visit_name__", None) or type(column_type).__name__
    return str(name).lower()


def _length(column_type: Any) -> int | None:
    if isinstance(column_type, sqltypes.String) and not isinstance(column_type, sqltypes.Enum):
        return column_type.length
    return None


def column_info(name: str, column_type: Any, *, nullable: bool, primary_key: bool) -> ColumnInfo:
    """One reflected column as the manifest sees it (both reflection paths build it here).

    MariaDB/MySQL ``BOOLEAN`` is ``TINYINT(1)``: it reads as a boolean."""
    enums = column_type.enums if isinstance(column_type, sqltypes.Enum) else ()
    boolean = getattr(column_type, "display_width", None) == 1 and _type_name(column_type) == "tinyint"
    return ColumnInfo(
        name=name,
        type_name="boolean" if boolean else _type_name(column_type),
        affinity="boolean" if boolean else affinity_of(column_type),
        nullable=nullable and not primary_key,
        length=_length(column_type),
        primary_key=primary_key,
        timezone=bool(getattr(column_type, "timezone", False)),
        enum_values=tuple(str(v) for v in enums),
    )


def check_infos(checks: Any) -> tuple[CheckInfo, ...]:
    """CHECK constraints as ``(name, sqltext)`` pairs; MariaDB's own ``json_valid`` checks of JSON
    columns stay (they are real constraints on what may be written)."""
    found = []
    for check in checks:
        name, sqltext = (check.get("name"), check.get("sqltext")) if isinstance(check, dict) else check
        if sqltext is not None:
            found.append(CheckInfo(str(name) if name else None, str(sqltext)))
    return tuple(sorted(found, key=lambda c: (c.name or "", c.sqltext)))


def foreign_keys_into(
    connection: Connection, schemas: TargetSchemas, key: str
) -> list[tuple[str, dict[str, Any]]]:
    """Every foreign key of the reflected schemas that references table ``key``:
    ``(referencing table's name, the inspector's foreign key record)``."""
    found: list[tuple[str, dict[str, Any]]] = []
    with _qualified_names(connection):
        inspector = inspect(connection)
        for schema in schemas.reflected:
            for (_, referring), keys in inspector.get_multi_foreign_keys(schema=schema).items():
                found += [
                    (schemas.key(schema, referring), dict(fk))
                    for fk in keys
                    if schemas.key(fk.get("referred_schema") or schema, fk["referred_table"]) == key
                ]
    return found


_MARIADB_CHECKS = text(
    "SELECT TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
    "WHERE CONSTRAINT_SCHEMA = COALESCE(:schema, DATABASE())"
)


def inspector_checks(
    connection: Connection, schemas: TargetSchemas
) -> dict[str, tuple[CheckInfo, ...]] | None:
    """CHECK constraints per table where table reflection misses some: on MariaDB from
    ``information_schema`` (one query per schema), which also lists the column-level ones
    (``json_valid`` of JSON columns) SQLAlchemy's parser misses. None elsewhere (the reflected
    tables carry every CHECK)."""
    if not isinstance(dialect_of(connection), MariaDB):
        return None
    found: dict[str, list[dict[str, Any]]] = {}
    for schema in schemas.reflected:
        for table, name, clause in connection.execute(_MARIADB_CHECKS, {"schema": schema}).all():
            found.setdefault(schemas.key(schema, table), []).append({"name": name, "sqltext": clause})
    return {key: check_infos(checks) for key, checks in found.items()}


def inspector_unique(connection: Connection, tables: Mapping[str, Table]) -> dict[str, set[tuple[str, ...]]]:
    """Unique column sets table reflection misses: SQLite reports inline UNIQUE column
    constraints only as automatic indexes (empty elsewhere)."""
    options = dialect_of(connection).index_reflection_options
    if not options:
        return {}
    inspector = inspect(connection)
    found: dict[str, set[tuple[str, ...]]] = {}
    for key, table in tables.items():
        indexes = inspector.get_indexes(table.name, schema=table.schema, **options)
        found[key] = {tuple(c for c in i["column_names"] if c) for i in indexes if i.get("unique")}
    return found


def json_check_kind(column: ColumnInfo, checks: tuple[CheckInfo, ...]) -> ColumnInfo:
    """MariaDB stores JSON as LONGTEXT guarded by ``CHECK (json_valid(col))``: a JSON column."""
    if column.affinity != "text" or column.kind != "text":
        return column
    for check in checks:
        text = check.sqltext.replace("`", "").replace(" ", "").lower()
        if check.name == column.name and text == f"json_valid({column.name.lower()})":
            return replace(column, type_name="json", length=None)
    return column
