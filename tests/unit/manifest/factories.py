"""Hand-built schemas and manifests for pure graph and validation tests."""

from __future__ import annotations

import json
from typing import Any

from app.manifest.loading import load_manifest
from app.manifest.model import Manifest
from app.manifest.schema import ColumnInfo, ForeignKeyInfo, SchemaInfo, TableInfo

__all__ = ("fk", "manifest", "schema", "table")


def table(
    name: str,
    *columns: str,
    pk: tuple[str, ...] = ("id",),
    fks: tuple[ForeignKeyInfo, ...] = (),
    unique: tuple[tuple[str, ...], ...] = (),
    not_null: tuple[str, ...] = (),
    lengths: dict[str, int] | None = None,
) -> TableInfo:
    """A table with an integer ``id`` key and text columns (``name:integer`` for other types)."""
    infos: dict[str, ColumnInfo] = {}
    for spec in ("id", *columns) if "id" in pk and "id" not in columns else columns:
        column, _, type_name = spec.partition(":")
        type_name = type_name or ("integer" if column == "id" or column.endswith("_id") else "varchar")
        affinity = {"integer": "integer", "uuid": "other"}.get(type_name, "text")
        infos[column] = ColumnInfo(
            column,
            type_name,
            affinity,
            nullable=column not in pk and column not in not_null,
            length=(lengths or {}).get(column),
            primary_key=column in pk,
        )
    return TableInfo(name, infos, pk, unique, fks)


def fk(
    child: str,
    columns: str | tuple[str, ...],
    parent: str,
    referred: str | tuple[str, ...] = "id",
    name: str | None = None,
) -> ForeignKeyInfo:
    """A foreign key ``child(columns) -> parent(referred)``."""
    cols = (columns,) if isinstance(columns, str) else columns
    refs = (referred,) if isinstance(referred, str) else referred
    return ForeignKeyInfo(name or f"fk_{child}_{'_'.join(cols)}", child, cols, parent, refs)


def schema(*tables: TableInfo) -> SchemaInfo:
    """A schema of the given tables."""
    return SchemaInfo({t.name: t for t in tables})


def manifest(tables: dict[str, Any], subject: str = "users", **extra: Any) -> Manifest:
    """A manifest of the ``shop`` system with the given ``tables`` section."""

    document = {
        "system": "shop",
        "connection": {"env": "SHOP_URL"},
        "subject": {"table": subject, "key": "id", "identities": {"user_id": "id"}},
        "tables": tables,
        **extra,
    }
    return load_manifest(json.dumps(document), "json")
