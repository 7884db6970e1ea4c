"""Scrubbing: the subject's identity values mentioned inside any row's free text or JSON, replaced in SQL.

A column declaring ``scrub: [email, username]`` may hold the subject's e-mail or handle inside
other people's text (a reply ``@ada thanks``, an audit detail ``reset for ada@example.com``).
Erasure reads the subject's current values of those identities, then rewrites every occurrence in
that column of every row with :data:`SCRUB_SURROGATE`, in SQL and in keyset batches, leaving the
rest of the text byte-identical. An occurrence is *word-bounded*: the character before it is not
a letter, digit or one of ``_ . + -``, and the character after it is not a letter, digit, ``_``,
``-`` or ``@``, nor a ``.`` followed by a letter or digit (so ``ada`` does not match inside
``bob.ada`` or ``ada.lovelace``, while ``ada@example.com.`` at the end of a sentence does). E-mail
identities (and any identity whose rule is ``casefold``) match case-insensitively.

Per dialect: PostgreSQL ``regexp_replace(..., 'g')`` and ``~`` / ``~*`` (lookbehind needs 9.6+);
MariaDB/MySQL ``REGEXP_REPLACE`` and ``REGEXP`` with an inline ``(?i)``/``(?-i)`` flag (so the
column's collation does not decide case); SQLite has no regular expressions, so Lethe registers
``lethe_regexp_replace`` and ``lethe_regexp_match`` (Python :mod:`re`, same pattern) on its own
connections. The values enter the statements only as bound parameters; displayed statements show
placeholders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    Text,
    Update,
    and_,
    bindparam,
    cast,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy import types as sqltypes
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.dialects import (
    SQLITE_MATCH_FUNCTION,
    SQLITE_REPLACE_FUNCTION,
    Dialect,
    DialectLike,
    as_dialect,
    dialect_of,
)
from app.engine.erasure_sql import count_statement
from app.engine.keyset import Keyset
from app.engine.subjects import casefolds
from app.manifest.model import Manifest

__all__ = (
    "SCRUB_SURROGATE",
    "SQLITE_MATCH_FUNCTION",
    "SQLITE_REPLACE_FUNCTION",
    "Mention",
    "ScrubColumn",
    "ScrubPlan",
    "ScrubStatements",
    "identity_values",
    "install_scrub_functions",
    "mention_pattern",
    "mentions",
    "mentions_left",
    "plan_scrubs",
    "prepare_connection",
    "run_scrubs",
    "scrub_columns",
    "scrub_statements",
)

SCRUB_SURROGATE = "[erased]"
"""What replaces each mention (no character a regular-expression replacement treats specially)."""

_BEFORE = r"(?<![A-Za-z0-9_.+-])"
_AFTER = r"(?![A-Za-z0-9_@-])(?![.][A-Za-z0-9])"
_META = re.compile(r"([\\.^$*+?()\[\]{}|/#&~\-])")


def mention_pattern(value: str) -> str:
    """The word-bounded regular expression of one value, the same on every dialect."""
    return _BEFORE + _META.sub(r"\\\1", value) + _AFTER


@dataclass(frozen=True)
class Mention:
    """One value to scrub: the identity it belongs to, the value, and whether case is ignored."""

    identity: str
    value: str
    casefold: bool


@dataclass(frozen=True)
class ScrubColumn:
    """A column whose rows may mention the subject, and the identity names it declares."""

    table: str
    column: str
    identities: tuple[str, ...]

    @property
    def label(self) -> str:
        """``table.column`` (how plans, outcomes and messages name it)."""
        return f"{self.table}.{self.column}"


def scrub_columns(manifest: Manifest) -> list[ScrubColumn]:
    """Every column of the manifest that declares ``scrub``, in document order."""
    return [ScrubColumn(t, c, names) for t, c, names in manifest.scrubbed_columns()]


async def identity_values(
    conn: AsyncConnection, subject_table: Table, manifest: Manifest, key: Sequence[Any]
) -> dict[str, Any]:
    """The subject's current value of every identity of the manifest, as stored.

    Read by key before erasure changes the subject row: scrubbing and the independent
    verification look for these values. Identities without a value (NULL, empty text) are left out.
    """
    subject = manifest.subject
    names = sorted(subject.identities)
    columns = [subject_table.c[subject.identity(n).column] for n in names]
    condition = and_(*(subject_table.c[c] == v for c, v in zip(subject.key_columns, key, strict=True)))
    row = (await conn.execute(select(*columns).where(condition))).first()
    if row is None:
        return {}
    return {n: v for n, v in zip(names, row, strict=True) if v is not None and str(v).strip()}


def mentions(manifest: Manifest, column: ScrubColumn, values: Mapping[str, Any]) -> list[Mention]:
    """The values ``column`` is scrubbed of (identities the subject has no value for are skipped)."""
    return [
        Mention(n, str(values[n]).strip(), casefolds(manifest.subject.identity(n)))
        for n in column.identities
        if n in values
    ]


def _is_json(column: Any) -> bool:
    return isinstance(column.type, sqltypes.JSON)


def _param(name: str, value: str | None) -> ColumnElement[Any]:
    """A bound pattern, or its placeholder when the statement is only displayed."""
    if value is None:
        return literal_column(f":{name}")
    return bindparam(name, value, type_=Text())


def _pattern(mention: Mention | None, index: int, dialect: Dialect, casefold: bool) -> ColumnElement[Any]:
    pattern = None if mention is None else dialect.regex_pattern(mention_pattern(mention.value), casefold)
    return _param(f"scrub_pattern_{index}", pattern)


def _replace(
    text: ColumnElement[Any], mention: Mention | None, index: int, dialect: Dialect, casefold: bool
) -> ColumnElement[Any]:
    surrogate = bindparam(f"scrub_surrogate_{index}", SCRUB_SURROGATE, type_=Text())
    return dialect.regex_replace(text, _pattern(mention, index, dialect, casefold), surrogate, casefold)


@dataclass(frozen=True)
class ScrubStatements:
    """The SQL of one scrubbed column: which rows still mention the subject, and the UPDATE."""

    column: ScrubColumn
    matching: ColumnElement[bool]
    update: Update

    def count(self, table: Table) -> Any:
        """``SELECT count(*)`` of the rows still mentioning the subject."""
        return count_statement(table, self.matching)


def _slots(
    manifest: Manifest, column: ScrubColumn, values: Mapping[str, Any] | None
) -> list[tuple[Mention | None, bool]]:
    if values is None:  # display: one placeholder per declared identity
        return [(None, casefolds(manifest.subject.identity(n))) for n in column.identities]
    return [(m, m.casefold) for m in mentions(manifest, column, values)]


def scrub_statements(
    table: Table,
    manifest: Manifest,
    column: ScrubColumn,
    values: Mapping[str, Any] | None,
    dialect: DialectLike,
) -> ScrubStatements | None:
    """The statements scrubbing ``column`` of the subject's ``values`` (None: display placeholders).

    Returns None when the subject has none of the column's identities. Each value is a cheap
    ``LIKE`` prefilter (a superset, escaped) and a word-bounded regular expression; the UPDATE
    applies every value's replacement in turn and cuts the text to the column's declared length.
    """
    slots = _slots(manifest, column, values)
    if not slots:
        return None
    sql = as_dialect(dialect)
    target = table.c[column.column]
    text = sql.json_as_text(target) if _is_json(target) else target
    conditions = []
    replaced: ColumnElement[Any] = text
    for index, (mention, casefold) in enumerate(slots):
        match = sql.regex_matches(text, _pattern(mention, index, sql, casefold), casefold)
        if mention is not None:
            prefilter = (
                text.icontains(mention.value, autoescape=True)
                if casefold
                else text.contains(mention.value, autoescape=True)
            )
            match = and_(prefilter, match)
        conditions.append(match)
        replaced = _replace(replaced, mention, index, sql, casefold)
    length = getattr(target.type, "length", None)
    if isinstance(length, int) and not _is_json(target):
        replaced = func.substr(replaced, 1, length)
    if sql.casts_text_literals and _is_json(target):
        replaced = cast(replaced, target.type)
    matching = or_(*conditions)
    return ScrubStatements(column, matching, update(table).where(matching).values({column.column: replaced}))


@dataclass
class ScrubPlan:
    """What erasure does to one scrubbed column: the identities, rows mentioning the subject, SQL."""

    table: str
    column: str
    identities: list[str]
    rows: int = 0
    sql: list[str] = field(default_factory=list)


async def plan_scrubs(
    conn: AsyncConnection,
    tables: Mapping[str, Table],
    manifest: Manifest,
    values: Mapping[str, Any] | None,
    dialect: Any,
) -> list[ScrubPlan]:
    """The scrubbing part of an erasure plan: SQL with placeholders, and (with ``values``) the
    rows that mention the subject now (``dialect``: the target's, or its SQLAlchemy dialect)."""
    await prepare_connection(conn)
    sql = dialect_of(dialect)
    plans = []
    for column in scrub_columns(manifest):
        table = tables[column.table]
        shown = scrub_statements(table, manifest, column, None, sql)
        plan = ScrubPlan(column.table, column.column, list(column.identities))
        if shown is not None:
            plan.sql = [sql.render_line(shown.update)]
        live = None if values is None else scrub_statements(table, manifest, column, values, sql)
        if live is not None:
            plan.rows = int((await conn.execute(live.count(table))).scalar_one())
        plans.append(plan)
    return plans


async def run_scrubs(
    conn: AsyncConnection,
    tables: Mapping[str, Table],
    manifest: Manifest,
    values: Mapping[str, Any],
    *,
    batch_size: int,
    own_transactions: bool,
) -> dict[str, int]:
    """Scrub every declared column of the subject's ``values``; rows changed per ``table.column``.

    Tables with a primary key (one column or several) are scrubbed in keyset batches of
    ``batch_size`` rows; with ``own_transactions`` each batch commits on its own (else the
    caller's transaction holds all).
    """
    changed: dict[str, int] = {}
    for column in scrub_columns(manifest):
        table = tables[column.table]
        statements = scrub_statements(table, manifest, column, values, dialect_of(conn))
        if statements is not None:
            changed[column.label] = await _scrub_column(conn, table, statements, batch_size, own_transactions)
    return changed


async def _scrub_column(
    conn: AsyncConnection, table: Table, statements: ScrubStatements, batch_size: int, own_transactions: bool
) -> int:
    keyset = Keyset.of(table)
    if not keyset.columns:
        async with conn.begin() if own_transactions else nullcontext():
            return max((await conn.execute(statements.update)).rowcount, 0)
    total = 0
    after: list[Any] | None = None
    while True:
        async with conn.begin() if own_transactions else nullcontext():
            upto = await keyset.bound(conn, statements.matching, after, batch_size)
            if upto is None:
                return total
            batch = statements.update.where(keyset.between(after, upto))
            total += max((await conn.execute(batch)).rowcount, 0)
        after = upto


async def mentions_left(
    conn: AsyncConnection, tables: Mapping[str, Table], manifest: Manifest, values: Mapping[str, Any]
) -> dict[str, int]:
    """Rows of each scrubbed column still mentioning one of the subject's values (verification)."""
    left: dict[str, int] = {}
    for column in scrub_columns(manifest):
        table = tables[column.table]
        statements = scrub_statements(table, manifest, column, values, dialect_of(conn))
        if statements is not None:
            left[column.label] = int((await conn.execute(statements.count(table))).scalar_one())
    return left


async def prepare_connection(conn: AsyncConnection) -> None:
    """On SQLite, register the regular-expression functions (a no-op elsewhere)."""
    if dialect_of(conn).embedded:
        await conn.run_sync(lambda sync: install_scrub_functions(sync.connection.dbapi_connection))


def _sqlite_replace(text: Any, pattern: Any, replacement: Any, flags: Any) -> Any:
    if text is None or pattern is None:
        return text
    options = re.IGNORECASE if flags == "i" else 0
    return re.sub(str(pattern), lambda _: str(replacement), str(text), flags=options)


def _sqlite_match(text: Any, pattern: Any, flags: Any) -> int | None:
    if text is None or pattern is None:
        return None
    options = re.IGNORECASE if flags == "i" else 0
    return 1 if re.search(str(pattern), str(text), flags=options) else 0


def install_scrub_functions(dbapi_connection: Any) -> None:
    """Register the regular-expression functions scrubbing uses on a SQLite connection."""
    dbapi_connection.create_function(SQLITE_REPLACE_FUNCTION, 4, _sqlite_replace, deterministic=True)
    dbapi_connection.create_function(SQLITE_MATCH_FUNCTION, 3, _sqlite_match, deterministic=True)
