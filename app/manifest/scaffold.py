"""Write a draft manifest (commented YAML) from a reflected schema: links, categories, guesses."""

from __future__ import annotations

import json
import re

from app.manifest.graph import candidate_paths
from app.manifest.lint import guess_personal, reaches_subject
from app.manifest.names import split_table
from app.manifest.schema import SchemaInfo, TableInfo

__all__ = ("SUBJECT_TABLE_GUESSES", "guess_subject_table", "scaffold")

SUBJECT_TABLE_GUESSES = (
    "users",
    "user",
    "customers",
    "customer",
    "accounts",
    "account",
    "people",
    "persons",
    "person",
    "members",
    "member",
    "clients",
    "client",
)
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")
_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}
_RECTIFIABLE = {
    "user.contact.email",
    "user.contact.phone_number",
    "user.name",
    "user.contact.address",
}


def _q(value: str) -> str:
    """A YAML scalar: plain when safe, JSON-quoted otherwise."""
    if _PLAIN.match(value) and value.lower() not in _RESERVED:
        return value
    return json.dumps(value)


def guess_subject_table(schema: SchemaInfo) -> str:
    """A table named like ``users``/``customers``, else the table most often referenced.

    Raises:
        ValueError: the schema has no tables.
    """
    for guess in SUBJECT_TABLE_GUESSES:
        for name in schema.tables:
            if split_table(name)[1] == guess:
                return name
    if not schema.tables:
        where = f" in schema(s) {', '.join(schema.schemas)}" if schema.schemas else ""
        raise ValueError(f"the database has no tables{where}")
    counts = {t: len(schema.references_to(t)) for t in schema.tables}
    return max(counts, key=lambda t: (counts[t], t))


def _singular(name: str) -> str:
    return name[:-1] if name.endswith("s") and not name.endswith("ss") else name


def scaffold(
    schema: SchemaInfo,
    *,
    system: str,
    env_var: str,
    subject_table: str | None = None,
    schemas: tuple[str, ...] = (),
) -> str:
    """A draft manifest for ``schema`` as YAML text, with comments where a person must decide.

    Every table with a foreign-key path to the subject is included with ``strategy: delete``
    (the Art. 17 default); links are left to derivation when exactly one path exists and written
    out (shortest path, flagged) otherwise; columns that look personal get a guessed category.
    ``schemas`` becomes ``connection.schemas`` (tables outside the default schema are qualified).

    Raises:
        ValueError: no subject table can be chosen, or it has no primary key.
    """
    subject = subject_table or guess_subject_table(schema)
    if subject not in schema.tables:
        raise ValueError(f"table '{subject}' does not exist")
    table = schema.tables[subject]
    if not table.primary_key:
        raise ValueError(f"subject table '{subject}' has no primary key")
    managed = [subject] + [t for t in schema.tables if t != subject and reaches_subject(schema, t, subject)]
    identities = _identities(table, subject)
    # a link is derived when exactly one chain reaches the nearest managed table; else written
    unresolved = {t for t in managed[1:] if len(candidate_paths(schema, t, set(managed) - {t})) != 1}
    lines = _header(system, env_var, subject, table.primary_key, identities)
    if schema.schemas:
        lines.insert(3, f"# reflected schema(s): {', '.join(schema.schemas)}")
    if schemas:
        at = lines.index("subject:")
        lines.insert(at, f"  schemas: [{', '.join(_q(s) for s in schemas)}]  # reflected besides the default")
    for name in managed:
        lines += _table_lines(schema, name, subject, name in unresolved)
    return "\n".join(lines) + "\n"


def _identities(table: TableInfo, subject: str) -> dict[str, str]:
    identities: dict[str, str] = {}
    if len(table.primary_key) == 1:
        identities[f"{_singular(split_table(subject)[1])}_id"] = table.primary_key[0]
    for column in table.columns.values():
        guess = guess_personal(column)
        if guess is not None and guess.category == "user.contact.email":
            identities.setdefault("email", column.name)
    return identities


def _header(
    system: str, env_var: str, subject: str, key: tuple[str, ...], identities: dict[str, str]
) -> list[str]:
    key_text = _q(key[0]) if len(key) == 1 else "[" + ", ".join(_q(k) for k in key) + "]"
    lines = [
        "# Draft manifest written by `lethe manifest scaffold`: review every table before use.",
        "# strategy: delete removes the subject's rows; use anonymize (keep rows, replace personal",
        "# columns) or retain (with retention: {legal_basis, duration}) where the law requires.",
        f"system: {_q(system)}",
        "connection:",
        f"  env: {_q(env_var)}  # the variable holding the database URL (never the URL itself)",
        "subject:",
        f"  table: {_q(subject)}",
        f"  key: {key_text}",
        "  identities:",
    ]
    lines += [f"    {_q(name)}: {_q(column)}" for name, column in identities.items()]
    return [*lines, "tables:"]


def _table_lines(schema: SchemaInfo, name: str, subject: str, unresolved: bool) -> list[str]:
    table = schema.tables[name]
    lines = [
        f"  {_q(name)}:",
        "    # purpose: ...  legal_basis: ...  (they feed Art. 15 answers)",
        "    strategy: delete",
    ]
    if name != subject:
        lines += _link_lines(schema, name, subject, unresolved)
    references = {c for fk in table.foreign_keys for c in fk.columns}
    columns = []
    for column in table.columns.values():
        if column.primary_key or column.name in references:
            continue
        guess = guess_personal(column)
        if guess is None:
            continue
        note = f"guessed: {guess.reason}" if guess.strong else f"unsure: {guess.reason}"
        extra = ", rectifiable: true" if name == subject and guess.category in _RECTIFIABLE else ""
        columns.append(f"      {_q(column.name)}: {{category: {guess.category}{extra}}}  # {note}")
    if columns:
        lines += ["    columns:", *columns]
    return lines


def _link_lines(schema: SchemaInfo, name: str, subject: str, unresolved: bool) -> list[str]:
    if not unresolved:
        return ["    # link: derived from the foreign keys (one path to the nearest managed table)"]
    paths = sorted(candidate_paths(schema, name, subject), key=len)
    if not paths:
        return [
            "    # link: no foreign-key path reaches the subject; write it out:",
            "    # link: {path: [{from: COLUMN, to: TABLE}]}",
        ]
    hops = ", ".join(
        f"{{from: {_cols(s.from_columns)}, to: {_q(s.to_table)}, to_columns: {_cols(s.to_columns)}}}"
        for s in paths[0]
    )
    return [
        f"    # {len(paths)} foreign-key paths reach the subject: shortest written, check it",
        f"    link: {{path: [{hops}]}}",
    ]


def _cols(columns: tuple[str, ...]) -> str:
    return _q(columns[0]) if len(columns) == 1 else "[" + ", ".join(_q(c) for c in columns) + "]"
