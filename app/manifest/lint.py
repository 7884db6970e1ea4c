"""Completeness lint: reflected tables and columns the manifest misses that look personal."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.manifest.inference import with_inferred_references
from app.manifest.issues import Issue, IssueKind
from app.manifest.model import Manifest
from app.manifest.schema import ColumnInfo, SchemaInfo, TableInfo

__all__ = (
    "CREDENTIAL_CATEGORY",
    "PersonalGuess",
    "guess_personal",
    "lint",
    "looks_like_credential",
    "reaches_subject",
)

CREDENTIAL_CATEGORY = "user.authorization.credentials"


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
        r"password|password_hash|passwd|pwd|hash|secret|token|mfa|otp|totp|hotp|api_key|apikey|"
        r"access_key|private_key|recovery_codes?|backup_codes?|salt|credentials?",
        "looks like a credential or authentication secret",
        CREDENTIAL_CATEGORY,
    ),
    (
        r"first_name|last_name|full_name|surname|given_name|family_name|maiden_name|display_name|"
        r"firstname|lastname|fullname|displayname",
        "looks like a person's name",
        "user.name",
    ),
    (
        r"username|user_name|nickname|nick|handle|screen_name|login|user_login",
        "looks like a handle (user name)",
        "user.account.username",
    ),
    (
        r"external_id|uuid|guid|public_id|ext_id|external_ref|oauth_id|provider_uid|subject_id",
        "looks like an identifier of the person in another system",
        "user.unique_id",
    ),
    (
        r"settings|preferences|prefs|user_settings|notification_settings|profile_settings",
        "looks like a person's settings",
        "user.account.settings",
    ),
    (
        r"job_title|position|occupation|employer|job|company_role",
        "looks like a job position",
        "user.job_title",
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
    "uuid": ("has a uuid type: an identifier that may follow the person across systems", "user.unique_id"),
}
_DOCUMENT_TYPES = ("text", "clob", "mediumtext", "longtext", "json", "jsonb")


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
    if column.type_name in _DOCUMENT_TYPES:
        return PersonalGuess("is free text or JSON that may hold personal data", "user.content", strong=False)
    return None


def looks_like_credential(column: ColumnInfo) -> bool:
    """Whether the column's name says it holds a credential (password, hash, token, MFA seed...)."""
    guess = guess_personal(column)
    return guess is not None and guess.category == CREDENTIAL_CATEGORY


def reaches_subject(schema: SchemaInfo, table: str, subject_table: str) -> bool:
    """Whether ``table`` has a foreign-key path to the subject table (or is it): a breadth-first
    walk, linear in the number of foreign keys."""
    seen = {table}
    frontier = [table]
    while frontier:
        current = frontier.pop()
        if current == subject_table:
            return True
        info = schema.tables.get(current)
        for fk in info.foreign_keys if info else ():
            if fk.referred_table not in seen:
                seen.add(fk.referred_table)
                frontier.append(fk.referred_table)
    return False


def lint(manifest: Manifest, schema: SchemaInfo) -> list[Issue]:
    """Findings for every uncovered table and column that looks personal.

    A finding is ``acknowledged`` when an ``ignore:`` entry of the manifest covers it. Tables
    that reference the subject but are missing from the manifest are findings of their own.
    """
    findings: list[Issue] = []
    subject = manifest.subject.table
    augmented, _ = with_inferred_references(schema, subject)
    for name, table in augmented.tables.items():
        spec = manifest.tables.get(name)
        linked = reaches_subject(augmented, name, subject)
        if spec is None and name != subject and linked:
            how = "references" if reaches_subject(schema, name, subject) else "has a column naming"
            findings.append(
                _finding(
                    manifest,
                    "personal_table",
                    f"tables.{name}",
                    name,
                    None,
                    f"table '{name}' {how} the subject table '{subject}' (directly or through other "
                    "tables) but is not in the manifest",
                )
            )
        findings += _credential_findings(manifest, name, table)
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
                    f"column '{name}.{column.name}' {guess.reason} but the manifest does not cover it"
                    + (" (cover it with `export: false`)" if guess.category == CREDENTIAL_CATEGORY else ""),
                )
            )
    return sorted(findings, key=lambda f: (f.table or "", f.column is not None, f.column or ""))


def _credential_findings(manifest: Manifest, name: str, table: TableInfo) -> list[Issue]:
    """Columns the manifest covers and exports although they look like credentials."""
    spec = manifest.tables.get(name)
    if spec is None:
        return []
    return [
        _finding(
            manifest,
            "exported_credential",
            f"tables.{name}.columns.{column}.export",
            name,
            column,
            f"column '{name}.{column}' looks like a credential but access exports include it: set "
            "`export: false` with an `export_reason` (withheld for security, Art. 15(4))",
        )
        for column, column_spec in spec.columns.items()
        if column_spec.export and column in table.columns and looks_like_credential(table.columns[column])
    ]


_KINDS: dict[str, IssueKind] = {
    "personal_table": "personal_table",
    "exported_credential": "exported_credential",
}


def _finding(manifest: Manifest, kind: str, path: str, table: str, column: str | None, message: str) -> Issue:
    acknowledged = any(rule.covers(table, column) for rule in manifest.ignore)
    return Issue(
        kind=_KINDS.get(kind, "personal_column"),
        severity="finding",
        path=path,
        table=table,
        column=column,
        message=message,
        acknowledged=acknowledged,
    )
