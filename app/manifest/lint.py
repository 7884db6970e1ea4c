"""Completeness lint: reflected tables and columns the manifest misses that look personal."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.manifest.graph import candidate_paths
from app.manifest.issues import Issue
from app.manifest.model import Manifest
from app.manifest.schema import ColumnInfo, SchemaInfo

__all__ = ("PersonalGuess", "guess_personal", "lint", "reaches_subject")


@dataclass(frozen=True)
class PersonalGuess:
    """Why a column looks personal, and the category and strategy a draft would give it."""

    reason: str
    category: str
    strong: bool
    """Strong guesses are findings anywhere; weak ones only in tables linked to the subject."""


_STRONG: tuple[tuple[str, str, str], ...] = (
    (r"e?mail|email_?address", "looks like an e-mail address", "user.contact.email"),
    (
        r"phone|mobile|telephone|tel|fax|msisdn",
        "looks like a phone number",
        "user.contact.phone_number",
    ),
    (
        r"birth|dob|birthday|birthdate|date_of_birth",
        "looks like a date of birth",
        "user.demographic.date_of_birth",
    ),
    (
        r"iban|bic|swift|account_number|card_number|pan",
        "looks like a bank or card number",
        "user.financial.account_number",
    ),
    (r"ip|ip_address|ipaddress|remote_addr", "looks like an IP address", "user.device.ip_address"),
    (
        r"ssn|passport|national_id|tax_id|vat_id|social_security",
        "looks like a national identifier",
        "user.government_id",
    ),
    (
        r"first_name|last_name|full_name|surname|given_name|family_name|maiden_name|display_name|"
        r"username|user_name|nickname",
        "looks like a person's name",
        "user.name",
    ),
    (
        r"street|postcode|postal_code|zip|zip_code|address|address_line\d?|house_number",
        "looks like a postal address",
        "user.contact.address",
    ),
    (
        r"gender|sex|ethnicity|religion|nationality",
        "looks like a sensitive attribute",
        "user.demographic",
    ),
    (
        r"user_agent|device_id|fingerprint|imei|mac_address",
        "looks like a device identifier",
        "user.device",
    ),
    (
        r"latitude|longitude|lat|lng|lon|geo|geolocation|location",
        "looks like a location",
        "user.location",
    ),
    (
        r"password|password_hash|secret|token",
        "looks like a credential",
        "user.authorization.credentials",
    ),
)
_WEAK: tuple[tuple[str, str, str], ...] = (
    (r"name", "looks like a name", "user.name"),
    (r"city|town|country", "is part of an address", "user.contact.address"),
    (
        r"note|notes|comment|body|message|bio|description|text|delivery_note",
        "is free text that may hold personal data",
        "user.content",
    ),
)
_PERSONAL_TYPES = {
    "inet": ("has an IP address type", "user.device.ip_address"),
    "cidr": ("has an IP address type", "user.device.ip_address"),
    "macaddr": ("has a MAC address type", "user.device"),
}


def _tokens(name: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
    return snake.strip("_")


def _matches(pattern: str, name: str) -> bool:
    """The pattern matches the whole name or one of its ``_``-separated parts (or a run of them)."""
    parts = name.split("_")
    candidates = {name} | {
        "_".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)
    }
    rx = re.compile(rf"^(?:{pattern})$")
    return any(rx.match(c) for c in candidates)


def guess_personal(column: ColumnInfo) -> PersonalGuess | None:
    """Whether a column looks personal by its name or type (None: it does not)."""
    if column.type_name in _PERSONAL_TYPES:
        reason, category = _PERSONAL_TYPES[column.type_name]
        return PersonalGuess(reason, category, strong=True)
    name = _tokens(column.name)
    whole_only = name.endswith(("_id", "_ids"))  # a reference: only `national_id` & co. count
    for patterns, strong in ((_STRONG, True), (_WEAK, False)):
        for pattern, reason, category in patterns:
            if re.fullmatch(pattern, name) if whole_only else _matches(pattern, name):
                return PersonalGuess(reason, category, strong=strong)
    if column.type_name in ("text", "clob", "mediumtext", "longtext"):
        return PersonalGuess("is free text that may hold personal data", "user.content", strong=False)
    return None


def reaches_subject(schema: SchemaInfo, table: str, subject_table: str) -> bool:
    """Whether ``table`` has a foreign-key path to the subject table (or is it)."""
    return table == subject_table or bool(candidate_paths(schema, table, subject_table))


def lint(manifest: Manifest, schema: SchemaInfo) -> list[Issue]:
    """Findings for every uncovered table and column that looks personal.

    A finding is ``acknowledged`` when an ``ignore:`` entry of the manifest covers it. Tables
    that reference the subject but are missing from the manifest are findings of their own.
    """
    findings: list[Issue] = []
    subject = manifest.subject.table
    for name, table in schema.tables.items():
        spec = manifest.tables.get(name)
        linked = reaches_subject(schema, name, subject)
        if spec is None and name != subject and linked:
            findings.append(
                _finding(
                    manifest,
                    "personal_table",
                    f"tables.{name}",
                    name,
                    None,
                    f"table '{name}' references the subject table '{subject}' but is not in the manifest",
                )
            )
        covered = set(spec.columns) if spec else set()
        covered |= {c for fk in table.foreign_keys for c in fk.columns}
        for column in table.columns.values():
            if column.name in covered or column.primary_key:
                continue
            guess = guess_personal(column)
            if guess is None or not (guess.strong or linked):
                continue
            findings.append(
                _finding(
                    manifest,
                    "personal_column",
                    f"tables.{name}.columns.{column.name}",
                    name,
                    column.name,
                    f"column '{name}.{column.name}' {guess.reason} but the manifest does not cover it",
                )
            )
    return sorted(findings, key=lambda f: (f.table or "", f.column is not None, f.column or ""))


def _finding(manifest: Manifest, kind: str, path: str, table: str, column: str | None, message: str) -> Issue:
    acknowledged = any(rule.covers(table, column) for rule in manifest.ignore)
    return Issue(
        kind="personal_table" if kind == "personal_table" else "personal_column",
        severity="finding",
        path=path,
        table=table,
        column=column,
        message=message,
        acknowledged=acknowledged,
    )
