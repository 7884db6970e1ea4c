"""A reflected target schema as plain data, so the graph and validation stay pure and testable."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.manifest.names import split_table

__all__ = ("CheckInfo", "ColumnInfo", "ForeignKeyInfo", "SchemaInfo", "TableInfo", "column_kind")


@dataclass(frozen=True)
class ColumnInfo:
    """One column as the database declares it.

    ``type_name`` is the lower-cased SQL type without arguments (``varchar``, ``integer``,
    ``timestamp``); ``affinity`` is one of ``text``, ``integer``, ``number``, ``boolean``,
    ``date``, ``datetime``, ``binary``, ``other``; ``length`` is the declared character length;
    ``timezone`` whether a timestamp keeps its time zone; ``enum_values`` the labels of an enum.
    """

    name: str
    type_name: str
    affinity: str = "text"
    nullable: bool = True
    length: int | None = None
    primary_key: bool = False
    timezone: bool = False
    enum_values: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """The type family surrogates and constants are chosen by (see :func:`column_kind`)."""
        return column_kind(self.type_name, self.affinity)


_KIND_BY_TYPE_NAME = {
    "uuid": "uuid",
    "inet": "inet",
    "inet4": "inet",
    "inet6": "inet",
    "cidr": "cidr",
    "json": "json",
    "jsonb": "json",
    "array": "array",
    "enum": "enum",
    "time": "time",
}
_KIND_BY_AFFINITY = {
    "text": "text",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime",
    "binary": "binary",
}


def column_kind(type_name: str, affinity: str) -> str:
    """The type family of a column: ``text``, ``integer``, ``number``, ``boolean``, ``date``,
    ``time``, ``datetime``, ``uuid``, ``inet``, ``cidr``, ``json``, ``array``, ``enum``,
    ``binary`` or ``other`` (intervals, geometry, money ... have no blank value of their own)."""
    return _KIND_BY_TYPE_NAME.get(type_name) or _KIND_BY_AFFINITY.get(affinity, "other")


@dataclass(frozen=True)
class CheckInfo:
    """A CHECK constraint: its name (None when the database gave it none) and its SQL text."""

    name: str | None
    sqltext: str

    @property
    def label(self) -> str:
        """How messages name the constraint."""
        return self.name or f"CHECK ({self.sqltext})"


@dataclass(frozen=True)
class ForeignKeyInfo:
    """A declared foreign key: ``table.columns`` references ``referred_table.referred_columns``."""

    name: str | None
    table: str
    columns: tuple[str, ...]
    referred_table: str
    referred_columns: tuple[str, ...]

    @property
    def label(self) -> str:
        """How messages name the key: its constraint name, or the column mapping."""
        mapping = (
            f"{self.table}({', '.join(self.columns)}) -> "
            f"{self.referred_table}({', '.join(self.referred_columns)})"
        )
        return f"{self.name} [{mapping}]" if self.name else mapping


@dataclass(frozen=True)
class TableInfo:
    """A table: columns in declaration order, primary key, unique column sets, foreign keys and
    CHECK constraints."""

    name: str
    columns: dict[str, ColumnInfo]
    primary_key: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    foreign_keys: tuple[ForeignKeyInfo, ...] = ()
    checks: tuple[CheckInfo, ...] = ()

    def is_unique(self, columns: tuple[str, ...]) -> bool:
        """Whether ``columns`` (as a set) is the primary key or a declared unique set."""
        wanted = set(columns)
        return wanted == set(self.primary_key) or any(wanted == set(u) for u in self.unique)

    def column_is_unique(self, column: str) -> bool:
        """Whether ``column`` alone must be unique (single-column PK or UNIQUE)."""
        return self.is_unique((column,))


@dataclass(frozen=True)
class SchemaInfo:
    """Every table of a target, by manifest name (``invoices``, ``billing.invoices``).

    ``schemas`` lists the schemas reflection looked at (the default one first), for messages.
    """

    tables: dict[str, TableInfo] = field(default_factory=dict)
    schemas: tuple[str, ...] = ()

    def missing_table(self, name: str) -> str:
        """Why ``name`` finds no table, with a hint when it qualifies the default schema."""
        schema, bare = split_table(name)
        if schema is not None and self.schemas and schema == self.schemas[0] and bare in self.tables:
            return f"table '{name}' does not exist: '{schema}' is the default schema, write '{bare}'"
        return f"table '{name}' does not exist"

    def foreign_keys(self) -> list[ForeignKeyInfo]:
        """Every foreign key of the schema."""
        return [fk for table in self.tables.values() for fk in table.foreign_keys]

    def references_to(self, table: str) -> list[ForeignKeyInfo]:
        """Foreign keys (of any table) that reference ``table``."""
        return [fk for fk in self.foreign_keys() if fk.referred_table == table]
