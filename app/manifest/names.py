"""Table names of a manifest: ``invoices`` (the connection's default schema) or ``billing.invoices``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.manifest.model import Manifest

__all__ = (
    "check_schema_name",
    "check_table_name",
    "manifest_schemas",
    "split_table",
    "table_key",
)

_PART = r"[A-Za-z_][A-Za-z0-9_$]*"
_TABLE = re.compile(rf"^(?:({_PART})\.)?({_PART})$")
_SCHEMA = re.compile(rf"^{_PART}$")


def split_table(key: str) -> tuple[str | None, str]:
    """``billing.invoices`` -> ``("billing", "invoices")``; ``invoices`` -> ``(None, "invoices")``.

    None stands for the connection's default schema (PostgreSQL's ``current_schema()``, the
    database of a MariaDB URL, SQLite's ``main``).
    """
    schema, _, name = key.rpartition(".")
    return (schema or None), name


def table_key(schema: str | None, name: str, default_schema: str | None = None) -> str:
    """The manifest's name of a reflected table: bare in the default schema, else qualified."""
    if schema is None or schema == default_schema:
        return name
    return f"{schema}.{name}"


def check_table_name(key: str) -> None:
    """Refuse a table name that is neither ``table`` nor ``schema.table``.

    Raises:
        ValueError: naming the table and the accepted forms.
    """
    if not _TABLE.match(key):
        raise ValueError(
            f"table name '{key}' must be `table` or `schema.table` (letters, digits, _ and $, "
            "not starting with a digit)"
        )


def check_schema_name(name: str) -> None:
    """Refuse a schema name that is not a plain identifier.

    Raises:
        ValueError: naming the schema.
    """
    if not _SCHEMA.match(name):
        raise ValueError(f"schema name '{name}' must be letters, digits, _ and $, not starting with a digit")


def _schemas_of(names: Iterable[str]) -> list[str]:
    return [schema for schema, _ in map(split_table, names) if schema is not None]


def manifest_schemas(manifest: Manifest) -> tuple[str, ...]:
    """Every named schema the manifest needs reflected: ``connection.schemas``, then the schemas
    of its qualified table names (tables, subject, hop targets, retention policies, ignores), in
    first-seen order."""
    names: list[str] = [*manifest.tables, manifest.subject.table]
    for spec in manifest.tables.values():
        links = [spec.link] if spec.link is not None else list((spec.links or {}).values())
        names += [hop.to for link in links for hop in link.path]
    names += [policy.table for policy in manifest.retention_policies]
    names += [rule.table for rule in manifest.ignore]
    return tuple(dict.fromkeys([*manifest.connection.schemas, *_schemas_of(names)]))
