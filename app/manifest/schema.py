"""A reflected target schema as plain data, so the graph and validation stay pure and testable."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.manifest.names import split_table

__all__ = ("ColumnInfo", "ForeignKeyInfo", "SchemaInfo", "TableInfo")


@dataclass(frozen=True)
class ColumnInfo:
    """One column as the database declares it.

    ``type_name`` is the lower-cased SQL type without arguments (``varchar``, ``integer``,
    ``timestamp``); ``affinity`` is one of ``text``, ``integer``, ``number``, ``boolean``,
    ``date``, ``datetime``, ``binary``, ``other``; ``length`` is the declared character length.
    """

    name: str
    type_name: str
    affinity: str = "text"
    nullable: bool = True
    length: int | None = None
    primary_key: bool = False


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
    """A table: columns in declaration order, primary key, unique column sets, foreign keys."""

    name: str
    columns: dict[str, ColumnInfo]
    primary_key: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    foreign_keys: tuple[ForeignKeyInfo, ...] = ()

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
