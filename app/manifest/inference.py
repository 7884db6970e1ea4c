"""Logical references inferred from column names and types, for schemas that declare no foreign keys.

Many applications keep references logical (no constraint). A column is taken as a reference when
its name says so and its type equals the referenced key's type:

- ``<name>_id`` / ``<Name>Id`` where ``<name>`` is a table's name (singular or plural):
  ``post_id`` / ``PostId`` -> ``posts``, ``channel_id`` -> ``channels``;
- a role of a person, ending in ``_id``, ``Id`` or ``_by``: ``owner_id``, ``author_id``,
  ``CreatorId``, ``sender_id``, ``target_user_id``, ``created_by`` ... -> the subject table.

The referenced table needs a single-column primary key; a column already covered by a declared
foreign key, or its own table's whole primary key, is never inferred. Inferences are proposals
for a person to review (the scaffold writes them as ``logical: true`` hops with a reason).
"""

from __future__ import annotations

import re
from dataclasses import replace

from app.manifest.names import split_table
from app.manifest.schema import ColumnInfo, ForeignKeyInfo, SchemaInfo, TableInfo

__all__ = (
    "INFERRED_REASON",
    "PERSON_ROLES",
    "inferred_references",
    "reference_stem",
    "snake_case",
    "with_inferred_references",
)

INFERRED_REASON = "inferred from the column name; review"
"""The ``reason`` the scaffold writes on every inferred (logical) hop."""

PERSON_ROLES = frozenset(
    {
        "user",
        "owner",
        "author",
        "creator",
        "sender",
        "recipient",
        "receiver",
        "actor",
        "member",
        "assignee",
        "reporter",
        "customer",
        "account",
        "person",
        "profile",
        "editor",
        "moderator",
        "inviter",
        "invitee",
        "requester",
        "reviewer",
        "participant",
        "created",
        "updated",
        "deleted",
        "modified",
    }
)
"""Last words of a column stem that name a person: such columns reference the subject table."""

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake_case(name: str) -> str:
    """``CreatorId`` -> ``creator_id``; ``user_id`` unchanged."""
    return _CAMEL.sub(r"_\1", name).lower().strip("_")


def reference_stem(name: str) -> str | None:
    """The stem of a reference-looking column name (``target_user`` of ``TargetUserId``), else None."""
    snake = snake_case(name)
    for suffix in ("_id", "_by"):
        if snake.endswith(suffix) and len(snake) > len(suffix):
            return snake[: -len(suffix)]
    return None


def _singular(name: str) -> str:
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith(("ses", "xes", "ches", "shes")):
        return name[:-2]
    return name[:-1] if name.endswith("s") and not name.endswith("ss") else name


def _same_type(column: ColumnInfo, key: ColumnInfo) -> bool:
    if column.affinity != key.affinity:
        return False
    return (column.type_name == "uuid") == (key.type_name == "uuid")


def _target(schema: SchemaInfo, table: str, stem: str, subject_table: str) -> str | None:
    last = stem.split("_")[-1]
    for name in sorted(schema.tables):  # named schemas: ``billing.users`` is ``users`` here
        bare = split_table(name)[1]
        if name != table and _singular(bare.lower()) in (_singular(stem), _singular(last)):
            return name
    if last in PERSON_ROLES or _singular(last) == _singular(split_table(subject_table)[1].lower()):
        return subject_table
    return None


def inferred_references(schema: SchemaInfo, subject_table: str) -> list[ForeignKeyInfo]:
    """Every logical reference the names and types suggest (unnamed ``ForeignKeyInfo`` entries)."""
    found: list[ForeignKeyInfo] = []
    for table in schema.tables.values():
        declared = {c for fk in table.foreign_keys for c in fk.columns}
        for column in table.columns.values():
            if column.name in declared or table.primary_key == (column.name,):
                continue
            stem = reference_stem(column.name)
            target = None if stem is None else _target(schema, table.name, stem, subject_table)
            referenced = schema.tables.get(target or "")
            if referenced is None or referenced.name == table.name or len(referenced.primary_key) != 1:
                continue
            key = referenced.columns[referenced.primary_key[0]]
            if _same_type(column, key):
                found.append(ForeignKeyInfo(None, table.name, (column.name,), referenced.name, (key.name,)))
    return found


def with_inferred_references(
    schema: SchemaInfo, subject_table: str
) -> tuple[SchemaInfo, set[ForeignKeyInfo]]:
    """The schema with the inferred references added as keys, and the set of those added."""
    inferred = inferred_references(schema, subject_table)
    tables: dict[str, TableInfo] = {}
    for name, table in schema.tables.items():
        extra = tuple(fk for fk in inferred if fk.table == name)
        tables[name] = replace(table, foreign_keys=table.foreign_keys + extra) if extra else table
    return SchemaInfo(tables), set(inferred)
