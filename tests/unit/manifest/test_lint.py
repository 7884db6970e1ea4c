"""Personal-looking names and types, and ignore rules."""

from __future__ import annotations

import pytest

from app.manifest.lint import guess_personal, lint
from app.manifest.schema import ColumnInfo
from tests.unit.manifest.factories import fk, manifest, schema, table


@pytest.mark.parametrize(
    ("name", "type_name", "category"),
    [
        ("email", "varchar", "user.contact.email"),
        ("contactEmail", "varchar", "user.contact.email"),
        ("mobile_phone", "varchar", "user.contact.phone_number"),
        ("birth_date", "date", "user.demographic.date_of_birth"),
        ("iban", "varchar", "user.financial.account_number"),
        ("last_login_ip", "varchar", "user.device.ip_address"),
        ("client_addr", "inet", "user.device.ip_address"),
        ("first_name", "varchar", "user.name"),
        ("street", "varchar", "user.contact.address"),
        ("national_id", "varchar", "user.government_id"),
    ],
)
def test_personal_names_and_types(name: str, type_name: str, category: str) -> None:
    guess = guess_personal(ColumnInfo(name, type_name))
    assert guess is not None
    assert guess.category == category


@pytest.mark.parametrize(
    "name",
    [
        "created_at",
        "total_cents",
        "sku",
        "shipping_address_id",
        "status",
        "quantity",
        "zipper_count",
        "membership_id",
    ],
)
def test_ordinary_columns_are_not_personal(name: str) -> None:
    assert guess_personal(ColumnInfo(name, "varchar" if name == "sku" else "integer")) is None


def test_weak_guesses_only_count_in_tables_linked_to_the_subject() -> None:
    s = schema(
        table("users", "email"),
        table("products", "name", "description:text"),
        table("reviews", "user_id", "description:text", fks=(fk("reviews", "user_id", "users"),)),
        table("newsletter", "email"),
    )
    findings = lint(manifest({"users": {"columns": {"email": {"category": "user.contact.email"}}}}), s)
    assert [(f.kind, f.table, f.column) for f in findings] == [
        ("personal_column", "newsletter", "email"),
        ("personal_table", "reviews", None),
        ("personal_column", "reviews", "description"),
    ]
    ignored = manifest(
        {"users": {}}, ignore=[{"table": "newsletter", "reason": "double opt-in list, own DSR"}]
    )
    acknowledged = {(f.table, f.column): f.acknowledged for f in lint(ignored, s)}
    assert acknowledged[("newsletter", "email")] is True
    assert acknowledged[("users", "email")] is False
