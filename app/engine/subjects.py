"""Who the subject is, and which rows are theirs: the one resolver and path builder of the engine.

Export, rectification, erasure and replay all find the subject here, with one set of rules:

* only the identities the system declares are used (a request may carry identities meant for
  other systems); a system that declares none of them does not know the subject;
* each identity is compared by its ``match`` rule (exact, trimmed, casefold) in SQL, on every
  dialect the same way;
* a value that cannot be of the column's type (``"abc"`` for an integer key) matches nobody;
* every identity given must match the same row, and a lookup that matches several rows fails
  (:class:`AmbiguousSubject`) instead of touching several people;
* a tenant-scoped identity without a tenant fails (:class:`TenantRequired`).

The rows of a table that belong to the subject are found along the manifest's paths by
:func:`path_condition`: each hop is ``(from) IN (SELECT to FROM <alias> WHERE <next hop>)``.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy import types as sqltypes
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.casts import hop_source
from app.engine.dialects import Dialect, DialectLike, as_dialect, dialect_of
from app.engine.runs import RequestFailed
from app.engine.schema_info import Reflection, reflect
from app.engine.surrogates import placeholder_bind
from app.manifest.graph import SubjectGraph, SubjectPath, build_graph
from app.manifest.model import Identity, Manifest, normalise_identity
from app.manifest.names import manifest_schemas

__all__ = (
    "AmbiguousSubject",
    "Binds",
    "KeyReference",
    "ReflectedTarget",
    "SubjectLookupError",
    "TenantRequired",
    "casefolds",
    "coerce_identity",
    "identity_condition",
    "in_rows",
    "key_hasher",
    "path_condition",
    "reflect_target",
    "resolve_subject",
    "subject_condition",
    "subject_key_reference",
)


class SubjectLookupError(RequestFailed):
    """The request's identities cannot name one subject in a system (nothing was changed)."""


class AmbiguousSubject(SubjectLookupError):
    """The identities match several subjects: no one is touched."""


class TenantRequired(SubjectLookupError):
    """A tenant-scoped identity was given without its tenant."""


@dataclass(frozen=True)
class Binds:
    """How the subject key reaches SQL: bound values (execution) or named placeholders (plans)."""

    key_values: tuple[Any, ...] | None

    def key(self, index: int, column: Any) -> ColumnElement[Any]:
        """The ``index``-th subject key value, typed like ``column``."""
        name = f"subject_key_{index}"
        if self.key_values is None:
            return literal_column(f":{name}")
        return bindparam(name, self.key_values[index], type_=column.type)

    def secret(self, name: str, value: Any, type_: Any) -> ColumnElement[Any]:
        """A secret bind (the ``hash`` surrogate's key pads)."""
        if self.key_values is None:
            return placeholder_bind(name, value, type_)
        return bindparam(name, value, type_=type_)


# --- reflection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReflectedTarget:
    """The managed tables of a target as SQLAlchemy tables, and the subject graph over them."""

    tables: dict[str, Table]
    graph: SubjectGraph
    dialect: Dialect


async def reflect_target(
    connection: AsyncConnection, manifest: Manifest, reflection: Reflection | None = None
) -> ReflectedTarget:
    """Reflect the tables the manifest covers (and those they reference) and build the graph;
    ``reflection`` is such a reflection already at hand (``RequestRun.reflection``).

    Raises:
        ManifestInvalid: the manifest does not fit the live schema (unknown table, broken link).
    """
    if reflection is None:
        reflection = await reflect(connection, manifest_schemas(manifest), only=manifest.managed_tables())
    graph = build_graph(manifest, reflection.schema)
    return ReflectedTarget(tables=reflection.tables, graph=graph, dialect=dialect_of(connection))


# --- finding the subject -------------------------------------------------------------------


_PARSERS: dict[type, Any] = {int: int, Decimal: Decimal, float: float}


def coerce_identity(column: Any, value: str) -> Any:
    """Convert an identity given as text to the column's type (``"42"`` for an integer key).

    Returns None when the text cannot be such a value: then no subject matches.
    """
    column_type = column.type
    try:
        python_type = column_type.python_type
    except NotImplementedError:
        return value
    try:
        if python_type is uuid.UUID:
            parsed = uuid.UUID(value.strip())
            return parsed if getattr(column_type, "as_uuid", True) else str(parsed)
        parser = _PARSERS.get(python_type)
        return value if parser is None else parser(value.strip())
    except (ValueError, InvalidOperation):
        return None


def casefolds(identity: Identity) -> bool:
    """Whether an identity's values match whatever their case (its ``match`` rule is casefold)."""
    return identity.match == "casefold"


def identity_condition(
    column: Any, identity: Identity, value: Any, dialect: DialectLike
) -> ColumnElement[bool] | None:
    """Rows whose ``column`` holds the identity ``value`` under the identity's match rule (None:
    the value cannot match). ``value`` is a request's text, or a value read from the subject row
    (verification looks for it in other tables)."""
    rule = identity.match or "trimmed"
    if not isinstance(column.type, sqltypes.String) or not isinstance(value, str):
        coerced = coerce_identity(column, value) if isinstance(value, str) else value
        return None if coerced is None else column == coerced
    normal = normalise_identity(rule, value)
    if rule == "casefold":
        return func.lower(column) == normal
    return as_dialect(dialect).equals_exactly(column, normal)


async def resolve_subject(
    connection: AsyncConnection,
    manifest: Manifest,
    subject_table: Table,
    identities: Mapping[str, str],
    tenant: str | None = None,
) -> tuple[Any, ...] | None:
    """The subject key the request's identities name in this system (None: nobody matches).

    See the module docstring for the rules.

    Raises:
        AmbiguousSubject: the identities match several subjects.
        TenantRequired: a tenant-scoped identity was given without a tenant.
    """
    subject = manifest.subject
    conditions: list[ColumnElement[bool]] = []
    for name, value in sorted(identities.items()):
        if name not in subject.identities:
            continue
        identity = subject.identity(name)
        column = subject_table.c[identity.column]
        condition = identity_condition(column, identity, value, dialect_of(connection))
        if condition is None:
            return None
        conditions.append(condition)
        if identity.tenant_column is not None:
            if tenant is None:
                raise TenantRequired(
                    f"identity '{name}' of system '{manifest.system}' is scoped by tenant: give `tenant`",
                    system=manifest.system,
                )
            tenant_column = subject_table.c[identity.tenant_column]
            coerced = coerce_identity(tenant_column, tenant)
            if coerced is None:
                return None
            conditions.append(tenant_column == coerced)
    if not conditions:
        return None
    keys = [subject_table.c[k] for k in subject.key_columns]
    rows = (await connection.execute(select(*keys).where(and_(*conditions)).limit(2))).all()
    if len(rows) > 1:
        raise AmbiguousSubject(
            f"the identities match several subjects in system '{manifest.system}' "
            f"(table {subject.table}); nothing was changed: give a more specific identity",
            system=manifest.system,
        )
    return tuple(rows[0]) if rows else None


# --- pseudonymous references of subject keys ---------------------------------------------

KeyReference = Callable[[tuple[Any, ...]], str]
"""A function from a subject key to its reference (see :func:`key_hasher`)."""


def key_hasher(secret: str, system: str) -> KeyReference:
    """The reference of a subject key in ``system``: HMAC-SHA256 under the audit key of the
    system and the key (composite keys joined by ``.``).

    It is the erasure tombstone's ``subject_key_ref`` and the ``subject_key_ref`` of request
    progress: the same person in the same system has one reference whatever identity a request
    used. The HMAC state after the constant prefix is computed once and copied per key, which
    matters when a restored backup holds millions of subjects.
    """
    prefix = hmac.new(secret.encode("utf-8"), f"{system}\x00key\x00".encode(), hashlib.sha256)

    def reference(key: tuple[Any, ...]) -> str:
        value = key[0] if len(key) == 1 else ".".join(str(part) for part in key)
        state = prefix.copy()
        state.update(str(value).encode("utf-8"))
        return state.hexdigest()

    return reference


def subject_key_reference(secret: str, system: str, key: Sequence[Any]) -> str:
    """The reference of one subject key (see :func:`key_hasher`)."""
    return key_hasher(secret, system)(tuple(key))


# --- the subject's rows along the manifest's paths -----------------------------------------


def _columns_of(table: Any, names: Sequence[str]) -> ColumnElement[Any]:
    """One column, or a tuple of columns for a composite key (``(a, b) IN (SELECT ...)``)."""
    if len(names) == 1:
        column: ColumnElement[Any] = table.c[names[0]]
        return column
    return tuple_(*(table.c[n] for n in names))


def _key_equals(table: Any, columns: Sequence[str], binds: Binds) -> ColumnElement[bool]:
    return and_(*(table.c[column] == binds.key(i, table.c[column]) for i, column in enumerate(columns)))


def in_rows(
    table: Any, key: Sequence[str], rows: Select[Any], *, dialect: DialectLike
) -> ColumnElement[bool]:
    """``(key) IN (rows)``, wrapped on MySQL/MariaDB where ``rows`` may read ``table`` itself."""
    return _columns_of(table, key).in_(as_dialect(dialect).same_table_rows(rows))


def path_condition(
    path: SubjectPath,
    tables: Mapping[str, Table],
    subject_key: Sequence[str],
    binds: Binds,
    *,
    target: Any = None,
    dialect: DialectLike,
) -> ColumnElement[bool]:
    """The rows of ``path.table`` (or of ``target``, an alias of it) that belong to the subject.

    Each hop is ``(from) IN (SELECT to FROM <alias> WHERE <next hop>)`` (``CAST(from AS <type>)``
    for a hop with ``cast:``); the last hop into the
    subject table compares with the key directly (``orders.user_id = :subject_key_0``), exactly as
    hand-written SQL would, and also matches rows whose subject row is already gone. Every
    subquery reads an alias, so a self-referencing hop never correlates with the outer statement.
    On MariaDB/MySQL a subquery reading the table being changed is wrapped in a ``DISTINCT``
    derived table (MySQL refuses to read the target of an UPDATE/DELETE in a plain subquery).
    """
    outer = tables[path.table] if target is None else target
    steps = path.steps
    if not steps:
        return _key_equals(outer, subject_key, binds)
    levels: list[Any] = [outer] + [tables[s.to_table].alias() for s in steps]
    last = steps[-1]
    if set(last.to_columns) == set(subject_key) and last.cast is None:
        mapping = dict(zip(last.to_columns, last.from_columns, strict=True))
        condition = _key_equals(levels[-2], [mapping[k] for k in subject_key], binds)
        inner_steps = steps[:-1]
    else:
        condition = _key_equals(levels[-1], subject_key, binds)
        inner_steps = steps
    for index in range(len(inner_steps) - 1, -1, -1):
        step = inner_steps[index]
        source = levels[index + 1]
        chosen: Select[Any] = select(*(source.c[c] for c in step.to_columns)).where(condition)
        if index == 0 and path.table in path.tables:
            chosen = as_dialect(dialect).same_table_rows(chosen)
        condition = hop_source(levels[index], step).in_(chosen)
    return condition


def subject_condition(target: ReflectedTarget, table: str, key: Sequence[Any]) -> ColumnElement[bool]:
    """Rows of ``table`` that belong to the subject ``key`` through any of its links."""
    graph = target.graph
    binds = Binds(tuple(key))
    conditions = [
        path_condition(path, target.tables, graph.subject_key, binds, dialect=target.dialect)
        for path in graph.paths_for(table)
    ]
    return conditions[0] if len(conditions) == 1 else or_(*conditions)
