"""Table names of a manifest: qualified keys, their checks, and the schemas a manifest needs."""

from __future__ import annotations

import pytest

from app.lib.errors import ManifestInvalid
from app.manifest.loading import load_manifest
from app.manifest.names import manifest_schemas, split_table, table_key

DOCUMENT = """
system: crm
connection: {env: CRM_URL, schemas: [audit]}
subject: {table: accounts.users, key: id, identities: {email: email}}
tables:
  accounts.users: {columns: {email: {category: user.contact.email}}}
  billing.users:
    link: {path: [{from: account_id, to: accounts.users}]}
  notes: {}
retention_policies:
  - {name: old, table: archive.events, age_column: at, older_than: P1Y}
"""


def test_qualified_and_bare_names_split_and_join() -> None:
    assert split_table("billing.invoices") == ("billing", "invoices")
    assert split_table("invoices") == (None, "invoices")
    assert table_key("billing", "invoices", "public") == "billing.invoices"
    assert table_key("public", "invoices", "public") == "invoices"
    assert table_key(None, "invoices") == "invoices"


def test_a_manifest_names_the_schemas_it_needs_in_first_seen_order() -> None:
    manifest = load_manifest(DOCUMENT)
    assert manifest_schemas(manifest) == ("audit", "accounts", "billing", "archive")
    assert set(manifest.tables) == {"accounts.users", "billing.users", "notes"}


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("accounts.users:", "a.b.users:", "a.b.users"),
        ("notes: {}", "'1notes': {}", "1notes"),
        ("to: accounts.users}", "to: 'accounts.'}", "accounts."),
        ("table: archive.events", "table: 'archive events'", "archive events"),
        ("schemas: [audit]", "schemas: [audit, audit]", "names a schema twice"),
        ("schemas: [audit]", "schemas: ['au dit']", "au dit"),
    ],
)
def test_malformed_table_and_schema_names_are_refused_naming_them(old: str, new: str, named: str) -> None:
    with pytest.raises(ManifestInvalid) as caught:
        load_manifest(DOCUMENT.replace(old, new, 1))
    assert named in str(caught.value.extra["errors"]) or named in caught.value.detail
