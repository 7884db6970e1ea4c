"""Write a draft manifest (commented YAML) from a reflected schema: links, categories, guesses."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from app.manifest.graph import Step, candidate_paths
from app.manifest.inference import INFERRED_REASON, reference_stem, snake_case, with_inferred_references
from app.manifest.lint import CREDENTIAL_CATEGORY, PersonalGuess, guess_personal, reaches_subject
from app.manifest.names import split_table
from app.manifest.schema import ColumnInfo, ForeignKeyInfo, SchemaInfo, TableInfo

__all__ = ("CREDENTIAL_REASON", "SUBJECT_TABLE_GUESSES", "guess_subject_table", "scaffold")

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
CREDENTIAL_REASON = "a credential: disclosure would endanger the account's security"
"""The ``export_reason`` the scaffold writes on columns that look like credentials."""
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

    Every table with a path to the subject (declared foreign keys, or references inferred from
    column names and types: see :mod:`app.manifest.inference`) is included. A table that other
    tables reference gets ``strategy: anonymize`` (deleting its rows would break the rows kept
    there, e.g. retained orders pointing at the user); the others ``delete`` (the Art. 17 default).
    A table referencing the subject from two columns (messages: sender and recipient; follows:
    follower and followee) gets one named link per column. Links are left to derivation when
    exactly one declared path exists and written out otherwise; an inferred hop is written with
    ``logical: true`` and a reason to review. Columns that look personal get a guessed category;
    credentials are withheld from exports (``export: false``).
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
    augmented, inferred = with_inferred_references(schema, subject)
    managed = [subject] + [
        t for t in augmented.tables if t != subject and reaches_subject(augmented, t, subject)
    ]
    draft = _Draft(
        schema, augmented, {(fk.table, fk.columns, fk.referred_table) for fk in inferred}, subject, managed
    )
    lines = _header(system, env_var, subject, table.primary_key, _identities(table, subject))
    if schema.schemas:
        lines.insert(3, f"# reflected schema(s): {', '.join(schema.schemas)}")
    if schemas:
        at = lines.index("subject:")
        lines.insert(at, f"  schemas: [{', '.join(_q(s) for s in schemas)}]  # reflected besides the default")
    for name in managed:
        lines += draft.table_lines(name)
    return "\n".join(lines) + "\n"


def _identities(table: TableInfo, subject: str) -> dict[str, str]:
    """Identity name -> YAML value: a bare column when the database keeps it unique, else
    ``{column: ..., ambiguous: refuse}`` (a request matching several people then fails)."""
    identities: dict[str, str] = {}
    if len(table.primary_key) == 1:
        identities[f"{_singular(split_table(subject)[1])}_id"] = _q(table.primary_key[0])
    for column in table.columns.values():
        guess = guess_personal(column)
        if guess is None or column.primary_key:
            continue
        if guess.category == "user.contact.email":
            name = "email"
        elif guess.category == "user.account.username" and table.column_is_unique(column.name):
            name = "username"
        else:
            continue
        if table.column_is_unique(column.name):
            identities.setdefault(name, _q(column.name))
        else:
            identities.setdefault(name, f"{{column: {_q(column.name)}, ambiguous: refuse}}")
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
    lines += [f"    {_q(name)}: {value}" for name, value in identities.items()]
    return [*lines, "tables:"]


@dataclass(frozen=True)
class _Draft:
    """What the scaffold knows while writing tables: both schemas, the inferences, the scope."""

    declared: SchemaInfo
    schema: SchemaInfo
    """The declared schema plus the inferred references."""
    inferred: set[tuple[str, tuple[str, ...], str]]
    subject: str
    managed: list[str]

    def is_inferred(self, table: str, columns: tuple[str, ...], to_table: str) -> bool:
        return (table, columns, to_table) in self.inferred

    def table_lines(self, name: str) -> list[str]:
        table = self.schema.tables[name]
        referencing = sorted({fk.table for fk in self.schema.references_to(name) if fk.table != name})
        lines = [f"  {_q(name)}:", "    # purpose: ...  legal_basis: ...  (they feed Art. 15 answers)"]
        if referencing:
            lines += [
                f"    # anonymize, not delete: {', '.join(referencing)} reference(s) these rows, and rows",
                "    # kept there (retained, or other people's) need them",
                "    strategy: anonymize",
            ]
        else:
            lines.append("    strategy: delete")
        if name != self.subject:
            lines += self.link_lines(name)
        references = {c for fk in table.foreign_keys for c in fk.columns}
        columns = []
        for column in table.columns.values():
            if column.primary_key or column.name in references:
                continue
            guess = guess_personal(column)
            if guess is None:
                continue
            columns.append(_column_line(name == self.subject, column, guess))
        if columns:
            lines += ["    columns:", *columns]
        return lines

    def link_lines(self, name: str) -> list[str]:
        direct = [fk for fk in self.schema.tables[name].foreign_keys if fk.referred_table == self.subject]
        if len(direct) > 1:
            return self._shared_links(name, direct)
        others = set(self.managed) - {name}
        paths = candidate_paths(self.schema, name, others)
        declared = candidate_paths(self.declared, name, others)
        if len(paths) == 1 and len(declared) == 1 and not self._has_inferred(paths[0]):
            return ["    # link: derived from the foreign keys (one path to the nearest managed table)"]
        shortest = sorted(candidate_paths(self.schema, name, self.subject), key=len)
        if not shortest:
            return [
                "    # link: no path reaches the subject; write it out:",
                "    # link: {path: [{from: COLUMN, to: TABLE}]}",
            ]
        if self._has_inferred(shortest[0]):
            comment = f"{len(shortest)} path(s) inferred from column names (no foreign key) reach the subject"
        else:
            comment = f"{len(shortest)} foreign-key paths reach the subject"
        return [
            f"    # {comment}: shortest written, check it",
            f"    link: {{path: [{', '.join(self._hop(s) for s in shortest[0])}]}}",
        ]

    def _shared_links(self, name: str, direct: list[ForeignKeyInfo]) -> list[str]:
        lines = [
            f"    # {len(direct)} columns reference the subject: rows shared by two people, one link",
            "    # each; give each link the `columns` it owns (erasing one person leaves the other's)",
            "    links:",
        ]
        used: set[str] = set()
        for fk in direct:
            label = _link_name(fk.columns, used)
            step = Step(name, fk.columns, fk.referred_table, fk.referred_columns)
            lines.append(f"      {label}: {{path: [{self._hop(step)}]}}")
        return lines

    def _has_inferred(self, steps: tuple[Step, ...]) -> bool:
        return any(self.is_inferred(s.from_table, s.from_columns, s.to_table) for s in steps)

    def _hop(self, step: Step) -> str:
        text = f"{{from: {_cols(step.from_columns)}, to: {_q(step.to_table)}"
        text += f", to_columns: {_cols(step.to_columns)}"
        if self.is_inferred(step.from_table, step.from_columns, step.to_table):
            text += f", logical: true, reason: {json.dumps(INFERRED_REASON)}"
        return text + "}"


def _link_name(columns: tuple[str, ...], used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9_]", "_", reference_stem(columns[0]) or snake_case(columns[0])) or "link"
    label, index = base, 2
    while label in used:
        label, index = f"{base}_{index}", index + 1
    used.add(label)
    return label


def _column_line(subject: bool, column: ColumnInfo, guess: PersonalGuess) -> str:
    note = f"guessed: {guess.reason}" if guess.strong else f"unsure: {guess.reason}"
    if guess.category == "user.content":
        note += "; others may name the subject here: add `scrub: [<identity>, ...]`"
    extra = ", rectifiable: true" if subject and guess.category in _RECTIFIABLE else ""
    if guess.category == CREDENTIAL_CATEGORY:
        extra += f", export: false, export_reason: {json.dumps(CREDENTIAL_REASON)}"
    return f"      {_q(column.name)}: {{category: {guess.category}{extra}}}  # {note}"


def _cols(columns: tuple[str, ...]) -> str:
    return _q(columns[0]) if len(columns) == 1 else "[" + ", ".join(_q(c) for c in columns) + "]"
