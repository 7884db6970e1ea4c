"""The manifest of one target system, as msgspec Structs (decoded from YAML or JSON)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import field
from msgspec.structs import force_setattr

from app.manifest.durations import IsoDuration
from app.manifest.names import check_schema_name, check_table_name
from app.manifest.vocabulary import (
    CAST_TYPES,
    CastType,
    ColumnStrategy,
    ConstantValue,
    OutsideReference,
    RowStrategy,
    SurrogateKind,
)

__all__ = (
    "CAST_TYPES",
    "EMAIL_SURROGATE_MAX_LENGTH",
    "UNIQUE_SURROGATE_MAX_LENGTH",
    "CastType",
    "ColumnSpec",
    "ColumnStrategy",
    "Connection",
    "ConstantValue",
    "Hop",
    "Identity",
    "IdentityMatch",
    "IgnoreRule",
    "Link",
    "Manifest",
    "OutsideReference",
    "Recipient",
    "RecipientEntry",
    "Retention",
    "RetentionFilter",
    "RetentionPolicy",
    "RowStrategy",
    "Spec",
    "SubjectSpec",
    "Surrogate",
    "TableSpec",
    "default_match",
    "normalise_identity",
    "recipient_names",
    "recipients_of",
)


UNIQUE_SURROGATE_MAX_LENGTH = 13
"""Column length a ``unique`` surrogate needs: its compact form ``'~<key>'`` for keys of up to
12 characters (the engine writes the long form ``'erased-<key>'`` when it fits, per row)."""
EMAIL_SURROGATE_MAX_LENGTH = 22
"""Column length an ``email`` surrogate needs: its compact form ``'<key>@x.invalid'`` for keys of
up to 12 characters (``'erased-<key>@invalid.example'`` when it fits, per row)."""

_TEXT_LENGTHS = {"unique": UNIQUE_SURROGATE_MAX_LENGTH, "email": EMAIL_SURROGATE_MAX_LENGTH, "uuid": 36}
"""Text a keyed surrogate needs; the others write nothing, or are cut to the column."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_CATEGORY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_CLIENT = re.compile(r"^[!-~]{1,255}$")
_SYSTEM = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class Spec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    """Base of every manifest struct: unknown keys are errors, values are immutable."""


def _columns(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


class Connection(Spec, frozen=True):
    """Where the target's SQLAlchemy URL is read from: never the URL itself.

    Exactly one of ``env`` (an environment variable name) or ``file`` (a path, e.g. a mounted
    Kubernetes secret) is given. ``schemas`` names further schemas to reflect (PostgreSQL
    schemas, MariaDB databases) besides the connection's default one; their tables are written
    schema-qualified (``billing.invoices``), unqualified names stay in the default schema.
    """

    env: str | None = None
    file: str | None = None
    schemas: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of `env` (variable name) or `file` (path)")
        for schema in self.schemas:
            check_schema_name(schema)
        if len(set(self.schemas)) != len(self.schemas):
            raise ValueError("`schemas` names a schema twice")


IdentityMatch = Literal["exact", "casefold", "trimmed"]
"""How a request's identity value is compared with the stored column.

``exact``: byte for byte. ``trimmed``: surrounding whitespace of the request's value is ignored.
``casefold``: also case-insensitive (``lower(column) = lower(value)``), the default for e-mail-like
identities. The pseudonymous reference of the identity is computed from the same normal form, so
two values that find the same subject always have the same reference.
"""


def default_match(name: str, column: str | None = None) -> IdentityMatch:
    """The match rule of an identity that does not declare one: ``casefold`` for e-mail-like
    identities (by identity or column name), ``trimmed`` for everything else."""
    return "casefold" if "mail" in f"{name} {column or ''}".casefold() else "trimmed"


def normalise_identity(match: IdentityMatch, value: str) -> str:
    """The normal form of an identity value under ``match`` (what SQL compares and what is hashed)."""
    if match == "exact":
        return value
    value = value.strip()
    return value.lower() if match == "casefold" else value


class Identity(Spec, frozen=True):
    """An identity a request may use to find the subject: a column of the subject table.

    ``tenant_column`` scopes the lookup: a request must then also give the tenant, and only rows
    of that tenant match (the same e-mail may belong to two tenants' different subjects).
    ``match`` is the comparison rule (see :data:`IdentityMatch`); omitted, it is
    :func:`default_match` of the identity's name and column.
    """

    column: str
    tenant_column: str | None = None
    match: IdentityMatch | None = None
    ambiguous: Literal["refuse"] | None = None
    """``refuse``: the column is not unique and a request matching several subjects fails;
    without it, an identity on a column the database does not keep unique is refused."""


class SubjectSpec(Spec, frozen=True):
    """The subject table, its key, and the identities that find a subject."""

    table: str
    key: str | tuple[str, ...]
    identities: dict[str, str | Identity]
    tenant_column: str | None = None
    """Default tenant scope for every identity written as a bare column name."""

    def __post_init__(self) -> None:
        check_table_name(self.table)
        force_setattr(self, "key", _columns(self.key))
        if not self.identities:
            raise ValueError("at least one identity is required")

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The key column(s) of the subject table."""
        return _columns(self.key)

    def identity(self, name: str) -> Identity:
        """The identity called ``name``, normalised (bare columns get the default tenant scope).

        Raises:
            KeyError: the manifest declares no such identity.
        """
        value = self.identities[name]
        if isinstance(value, str):
            value = Identity(column=value, tenant_column=self.tenant_column)
        if value.match is None:
            value = msgspec.structs.replace(value, match=default_match(name, value.column))
        return value

    def match_rule(self, name: str) -> IdentityMatch:
        """The comparison rule of identity ``name`` (explicit or :func:`default_match`)."""
        rule = self.identity(name).match
        return default_match(name) if rule is None else rule


class Hop(Spec, frozen=True):
    """One join step of a link: ``from`` columns of the current table equal ``to_columns``.

    Written as ``{from: order_id, to: orders}`` (``to_columns`` defaults to the primary key of
    ``to``, or the subject key when ``to`` is the subject table) or fully
    ``{from: [tenant_id, order_id], to: orders, to_columns: [tenant_id, id]}``. The direction of
    the foreign key does not matter: a hop from ``groups.id`` to ``group_members.group_id`` (a
    join table) is as valid as one from ``orders.user_id`` to ``users.id``.

    ``logical: true`` (with a ``reason``) declares a reference no foreign key backs where
    validation would otherwise refuse it (the two tables have a foreign key the hop does not
    follow, or the hop joins a primary key to another table's key). ``cast`` names the type the
    ``from`` columns are cast to before the comparison, for columns of different types (a text
    column holding uuids: ``cast: uuid``).
    """

    from_columns: str | tuple[str, ...] = field(name="from")
    to: str
    to_columns: str | tuple[str, ...] | None = None
    logical: bool = False
    reason: str | None = None
    cast: CastType | None = None

    def __post_init__(self) -> None:
        check_table_name(self.to)
        if self.logical and not (self.reason or "").strip():
            raise ValueError("a hop with `logical: true` needs a `reason`")
        force_setattr(self, "from_columns", _columns(self.from_columns))
        if self.to_columns is not None:
            force_setattr(self, "to_columns", _columns(self.to_columns))
            if len(_columns(self.to_columns)) != len(_columns(self.from_columns)):
                raise ValueError("`from` and `to_columns` must name the same number of columns")


class Link(Spec, frozen=True):
    """How a table reaches the subject: a path of hops ending at the subject table.

    In ``links`` (rows shared by several subjects) ``columns`` names the columns this link owns:
    erasing the subject reached through this link touches only those columns (plus any column not
    owned by any link, for every link).
    """

    path: tuple[Hop, ...]
    columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("a link needs at least one hop")


class Retention(Spec, frozen=True):
    """Why and how long data is kept although the subject asked for erasure (Art. 17(3))."""

    legal_basis: str
    duration: IsoDuration


class Surrogate(Spec, frozen=True):
    """The value an anonymized column gets, computed in SQL by the erasure engine.

    ``null``: NULL. ``constant``: ``value`` for every row (breaks UNIQUE; any JSON value on a
    JSON column). ``unique``: a value unique per row derived from the row's key, at most
    ``UNIQUE_SURROGATE_MAX_LENGTH`` characters. ``email``: like ``unique`` but shaped like an
    address on a reserved domain, at most ``EMAIL_SURROGATE_MAX_LENGTH`` characters. The README
    lists every kind. In YAML a bare kind works: ``surrogate: unique``.
    """

    kind: SurrogateKind
    value: ConstantValue = None

    def __post_init__(self) -> None:
        if self.kind == "constant" and self.value is None:
            raise ValueError("a constant surrogate needs a `value`")

    @property
    def max_length(self) -> int | None:
        """Longest text this surrogate writes (None for NULL)."""
        if self.kind == "constant":
            return len(self.value) if isinstance(self.value, str) else len(str(self.value))
        return _TEXT_LENGTHS.get(self.kind)


class ColumnSpec(Spec, frozen=True):
    """A personal column: its category, erasure strategy and whether the subject may rectify it."""

    category: str
    strategy: ColumnStrategy = "anonymize"
    surrogate: SurrogateKind | Surrogate | None = None
    """None: the type-aware default (see :func:`app.manifest.validation.default_surrogate`)."""
    retention: Retention | None = None
    rectifiable: bool = False
    export: bool = True
    """False: the column is withheld from access exports (Art. 15(4): credentials, secrets)."""
    export_reason: str | None = None
    """Why the column is withheld (required with ``export: false``; shown in the export)."""
    scrub: tuple[str, ...] = ()
    """Identity names of the subject whose values may appear inside this column's free text or
    JSON in any row (others' posts, audit details); erasure replaces each occurrence."""

    def __post_init__(self) -> None:
        if not _CATEGORY.match(self.category):
            raise ValueError("category must be dotted lower-case names, e.g. `user.contact.email`")
        if not self.export and not (self.export_reason or "").strip():
            raise ValueError("`export: false` needs an `export_reason` (shown in the export as withheld)")
        if self.export and self.export_reason is not None:
            raise ValueError("`export_reason` is only for columns with `export: false`")
        if len(set(self.scrub)) != len(self.scrub):
            raise ValueError("`scrub` names an identity twice")
        if isinstance(self.surrogate, str):
            force_setattr(self, "surrogate", Surrogate(kind=self.surrogate))

    @property
    def surrogate_spec(self) -> Surrogate | None:
        """The explicit surrogate, normalised to a :class:`Surrogate` (None: type-aware default)."""
        return self.surrogate if isinstance(self.surrogate, Surrogate) else None


class Recipient(Spec, frozen=True):
    """Someone the data is disclosed to (Art. 13(1)(e)), told about rectifications and erasures
    (Art. 19). ``client`` is the OAuth client id of the recipient's service: its webhook
    subscriptions to ``recipient.notice`` are told through the outbox; without it (or without
    such a subscription) an operator tells the recipient and records it."""

    name: str
    client: str | None = None

    def __post_init__(self) -> None:
        if not self.name.strip() or len(self.name) > 200:
            raise ValueError("a recipient's `name` needs 1 to 200 characters")
        if self.client is not None and not _CLIENT.match(self.client):
            raise ValueError("a recipient's `client` is a client id: 1 to 255 visible characters, no spaces")


RecipientName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
RecipientEntry = RecipientName | Recipient
"""A recipient in a manifest: its name alone (told by hand), or ``{name, client}``."""


def recipients_of(entries: tuple[RecipientEntry, ...]) -> list[Recipient]:
    """A recipient list as :class:`Recipient` entries (names alone have no client), in order.

    Raises:
        ValueError: a name is empty, too long or given twice.
    """
    found = [Recipient(name=e) if isinstance(e, str) else e for e in entries]
    names = [r.name for r in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"`recipients` names `{twice[0]}` twice")
    return found


def recipient_names(entries: tuple[RecipientEntry, ...]) -> list[str]:
    """The names of a recipient list, in order."""
    return [e if isinstance(e, str) else e.name for e in entries]


class TableSpec(Spec, frozen=True):
    """A table holding the subject's data.

    ``link`` is the path to the subject; omit it to derive it from the database's foreign keys
    (allowed when exactly one path exists). ``links`` instead names several links for rows shared
    by two subjects (``messages`` via ``sender_id`` and via ``recipient_id``); give one or the
    other. The subject table itself has no link.
    """

    purpose: str | None = None
    legal_basis: str | None = None
    recipients: tuple[RecipientEntry, ...] = ()
    """Who receives the table's data: names, or ``{name, client}`` (see :class:`Recipient`)."""
    strategy: RowStrategy = "anonymize"
    retention: Retention | None = None
    link: Link | None = None
    links: dict[str, Link] | None = None
    columns: dict[str, ColumnSpec] = field(default_factory=dict)
    on_outside_reference: OutsideReference = "fail"

    def __post_init__(self) -> None:
        if self.link is not None and self.links is not None:
            raise ValueError("give either `link` or `links`, not both")
        if self.links is not None and not self.links:
            raise ValueError("`links` needs at least one named link")
        recipients_of(self.recipients)  # names checked; entries kept as written (content hash)


class RetentionFilter(Spec, frozen=True):
    """A structured condition on a retention policy (never raw SQL)."""

    column: str
    op: Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "is_null", "not_null"]
    value: str | int | float | bool | tuple[str | int | float | bool, ...] | None = None

    def __post_init__(self) -> None:
        needs_value = self.op not in ("is_null", "not_null")
        if needs_value and self.value is None:
            raise ValueError(f"operator `{self.op}` needs a `value`")
        if self.op in ("in", "not_in") and not isinstance(self.value, tuple):
            raise ValueError(f"operator `{self.op}` needs a list `value`")
        if self.op not in ("in", "not_in") and isinstance(self.value, tuple):
            raise ValueError(f"operator `{self.op}` needs a single `value`, not a list")


class RetentionPolicy(Spec, frozen=True):
    """Rows of ``table`` whose ``age_column`` is older than ``older_than`` are purged.

    ``action``: ``delete`` rows, ``anonymize`` them with the manifest's surrogates, or
    ``soft_delete`` by setting ``soft_delete_column`` to the purge time. ``schedule`` is an
    ISO 8601 interval between runs (``P1D``); None runs only on demand. A policy with
    ``enabled: false`` is kept in the manifest but never runs.
    """

    name: str
    table: str
    age_column: str
    older_than: IsoDuration
    action: Literal["delete", "anonymize", "soft_delete"] = "delete"
    soft_delete_column: str | None = None
    filters: tuple[RetentionFilter, ...] = ()
    batch_size: int = 1000
    schedule: IsoDuration | None = None
    enabled: bool = True
    retention_override: str | None = None
    """Why this policy may purge sooner than a retention the manifest declares for its table
    (the reason is audited at registration); without it such a policy is refused."""

    def __post_init__(self) -> None:
        check_table_name(self.table)
        if self.action == "soft_delete" and not self.soft_delete_column:
            raise ValueError("action `soft_delete` needs `soft_delete_column`")
        if not 1 <= self.batch_size <= 100_000:
            raise ValueError("batch_size must be between 1 and 100000")
        if self.retention_override is not None and not self.retention_override.strip():
            raise ValueError("`retention_override` needs a non-empty reason")


class IgnoreRule(Spec, frozen=True):
    """Acknowledges a lint finding: a table (all its columns) or one column, with a reason."""

    table: str
    reason: str
    column: str | None = None

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError("an ignore entry needs a non-empty reason")

    def covers(self, table: str, column: str | None) -> bool:
        """Whether this rule acknowledges a finding on ``table``/``column``."""
        return self.table == table and (self.column is None or self.column == column)


class Manifest(Spec, frozen=True):
    """One target system: how to connect, who the subject is, and where their data lives."""

    system: str
    connection: Connection
    subject: SubjectSpec
    tables: dict[str, TableSpec]
    retention_policies: tuple[RetentionPolicy, ...] = ()
    ignore: tuple[IgnoreRule, ...] = ()
    version: int = 1
    """Format version of the manifest document (not the registry version)."""

    def __post_init__(self) -> None:
        if not _SYSTEM.match(self.system):
            raise ValueError("system must be lower-case letters, digits, '-' or '_' (max 63)")
        if self.version != 1:
            raise ValueError("only manifest format version 1 is supported")
        for table, spec in self.tables.items():
            check_table_name(table)
            for column, column_spec in spec.columns.items():
                unknown = [n for n in column_spec.scrub if n not in self.subject.identities]
                if unknown:
                    raise ValueError(
                        f"tables.{table}.columns.{column}.scrub: '{unknown[0]}' is not an identity "
                        f"of the subject (known: {', '.join(sorted(self.subject.identities))})"
                    )

    def scrubbed_columns(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """``(table, column, identity names)`` of every column declaring ``scrub``."""
        return [
            (table, column, spec.scrub)
            for table, table_spec in self.tables.items()
            for column, spec in table_spec.columns.items()
            if spec.scrub
        ]

    @property
    def subject_table(self) -> TableSpec:
        """The subject table's spec (an empty one when the manifest does not list it)."""
        return self.tables.get(self.subject.table, TableSpec())

    def managed_tables(self) -> list[str]:
        """Every table the manifest covers, the subject table included, in document order."""
        names = list(self.tables)
        if self.subject.table not in self.tables:
            names.insert(0, self.subject.table)
        return names

    def rectifiable_columns(self, table: str) -> list[str]:
        """Columns of ``table`` the subject may rectify (Art. 16)."""
        spec = self.tables.get(table)
        return [] if spec is None else [c for c, s in spec.columns.items() if s.rectifiable]


def is_identifier(name: str) -> bool:
    """Whether ``name`` looks like a plain SQL identifier (used by structural checks)."""
    return bool(_NAME.match(name))
