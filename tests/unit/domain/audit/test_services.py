"""Pure parts of the audit service: payload rules, canonical hashing, subject references."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.domain.audit.links import GENESIS_HASH, canonical_time, event_hash
from app.domain.audit.payloads import validate_payload
from app.domain.audit.references import subject_reference, tombstone_reference
from app.lib.errors import ValidationFailed
from app.manifest.model import default_match, normalise_identity

KEY = "unit-test-audit-key-of-at-least-32-bytes"


@pytest.mark.parametrize(
    "payload",
    [
        {"table": "users", "rows": 3, "dry_run": False},
        {"tables": ["users", "orders"], "columns": {"users": ["email", "name"]}},
        {
            "request_id": "3f1c2a9e-1b7d-4c55-9a61-0d2f0f9b8e11",
            "system": "shop:eu-1",
            "manifest": "v1.2",
        },
        {},
    ],
)
def test_payload_of_counts_and_identifiers_is_accepted(payload: dict[str, object]) -> None:
    assert validate_payload(payload) == payload


@pytest.mark.parametrize(
    "payload",
    [
        {"email": "alice@example.com"},
        {"name": "Alice Smith"},
        {"note": ""},
        {"ratio": 0.5},
        {"value": None},
        {"nested": {"deep": ["ok", "bob@example.com"]}},
        {"bad key": 1},
        {"a": {"b": {"c": {"d": {"e": 1}}}}},
        {"blob": b"raw"},
    ],
)
def test_payload_that_could_hold_personal_data_is_refused(payload: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed):
        validate_payload(payload)


def test_canonical_time_is_utc_with_microseconds() -> None:
    moment = datetime(2026, 11, 22, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    assert canonical_time(moment) == "2026-11-22T01:04:05.000006Z"


def _hash(**changes: object) -> str:
    fields: dict[str, object] = {
        "seq": 1,
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
        "actor": "op",
        "action": "a.b",
        "request_id": None,
        "system": None,
        "subject_ref": None,
        "payload": {"b": 1, "a": 2},
        "prev_hash": GENESIS_HASH,
    }
    return event_hash(**(fields | changes))  # type: ignore[arg-type]


def test_event_hash_is_canonical_and_covers_every_field() -> None:
    assert _hash() == _hash(payload={"a": 2, "b": 1})  # payload key order does not matter
    assert len(_hash()) == 64
    changes: list[dict[str, object]] = [
        {"seq": 2},
        {"occurred_at": datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)},
        {"actor": "x"},
        {"action": "a.c"},
        {"request_id": "r"},
        {"system": "s"},
        {"subject_ref": "0" * 64},
        {"payload": {"a": 2, "b": 2}},
        {"prev_hash": "1" * 64},
    ]
    assert len({_hash(**change) for change in changes} | {_hash()}) == len(changes) + 1


def test_same_person_same_reference() -> None:
    ref = subject_reference(KEY, "shop", "email", "alice@example.com")
    assert subject_reference(KEY, "shop", "email", "  Alice@Example.COM ") == ref
    assert subject_reference(KEY, "shop", "EMAIL", "alice@example.com") == ref
    assert subject_reference(KEY, "crm", "email", "alice@example.com") != ref
    assert subject_reference(KEY, None, "email", "alice@example.com") != ref
    assert (
        subject_reference("another-key-of-at-least-32-bytes-long", "shop", "email", "alice@example.com")
        != ref
    )
    assert "alice" not in ref
    assert normalise_identity(default_match("user_id"), " AbC ") == "AbC"  # ids stay case-sensitive
    assert subject_reference(KEY, "shop", "email", " Alice@x ", "exact") != subject_reference(
        KEY, "shop", "email", "alice@x", "exact"
    )
    assert subject_reference(KEY, "shop", "handle", "Bob", "casefold") == subject_reference(
        KEY, "shop", "handle", "bob", "casefold"
    )
    assert tombstone_reference(KEY, "shop", 42) == tombstone_reference(KEY, "shop", "42")
