"""Retention engine rules that need no database: cut-offs, policy shape, batch windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.engine.keyset import next_window
from app.engine.retention import (
    PolicyFilter,
    PurgePolicy,
    check_policy_shape,
    compute_cutoff,
    json_cursor,
)
from app.lib.errors import ValidationFailed


@pytest.mark.parametrize(
    ("older_than", "now", "cutoff"),
    [
        ("P30D", datetime(2026, 3, 31, 12, tzinfo=UTC), datetime(2026, 3, 1, 12, tzinfo=UTC)),
        ("P1M", datetime(2026, 3, 31, 12, tzinfo=UTC), datetime(2026, 2, 28, 12, tzinfo=UTC)),
        ("P1M", datetime(2028, 3, 31, tzinfo=UTC), datetime(2028, 2, 29, tzinfo=UTC)),
        ("P7Y", datetime(2026, 11, 22, tzinfo=UTC), datetime(2019, 11, 22, tzinfo=UTC)),
        ("P1Y", datetime(2028, 2, 29, tzinfo=UTC), datetime(2027, 2, 28, tzinfo=UTC)),
        ("P1Y2M3DT4H", datetime(2026, 5, 10, 6, tzinfo=UTC), datetime(2025, 3, 7, 2, tzinfo=UTC)),
        ("PT12H", datetime(2026, 1, 1, tzinfo=UTC), datetime(2025, 12, 31, 12, tzinfo=UTC)),
        ("P2W", datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_cutoff_is_calendar_aware(older_than: str, now: datetime, cutoff: datetime) -> None:
    assert compute_cutoff(older_than, now) == cutoff


def test_cutoff_defaults_to_now() -> None:
    before = datetime.now(UTC) - timedelta(days=1)
    assert abs(compute_cutoff("P1D") - before) < timedelta(seconds=5)


def _policy(**overrides: object) -> PurgePolicy:
    fields: dict[str, object] = {"system": "s", "table": "t", "age_column": "created_at", "older_than": "P1D"}
    fields.update(overrides)
    return PurgePolicy(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"age_column": None}, "age_column", "an age column is required"),
        ({"age_column": ""}, "age_column", "an age column is required"),
        ({"older_than": "1 year"}, "older_than", "not an ISO 8601 duration"),
        ({"older_than": "P"}, "older_than", "not an ISO 8601 duration"),
        ({"action": "truncate"}, "action", "unknown action 'truncate'"),
        ({"action": "soft_delete"}, "soft_delete_column", "needs soft_delete_column"),
        ({"batch_size": 0}, "batch_size", "between 1 and 100000"),
        ({"filters": (PolicyFilter("a", "like", "x"),)}, "filters[0].op", "unknown operator 'like'"),
        ({"filters": (PolicyFilter("a", "eq"),)}, "filters[0].value", "needs one scalar value"),
        ({"filters": (PolicyFilter("a", "eq", ("x",)),)}, "filters[0].value", "needs one scalar value"),
        ({"filters": (PolicyFilter("a", "not_in", ()),)}, "filters[0].value", "needs a non-empty list"),
        ({"filters": (PolicyFilter("a", "is_null", 1),)}, "filters[0].value", "takes no value"),
    ],
)
def test_malformed_policies_are_refused_with_the_field(
    overrides: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_policy_shape(_policy(**overrides))
    assert message in caught.value.detail
    (error,) = caught.value.extra["errors"]
    assert error["field"] == field
    assert message in error["message"]


def test_every_listed_operator_is_accepted() -> None:
    filters = (
        PolicyFilter("a", "eq", 1),
        PolicyFilter("a", "ne", "x"),
        PolicyFilter("a", "lt", 1.5),
        PolicyFilter("a", "le", 1),
        PolicyFilter("a", "gt", 1),
        PolicyFilter("a", "ge", True),
        PolicyFilter("a", "in", (1, 2)),
        PolicyFilter("a", "not_in", ("x",)),
        PolicyFilter("a", "is_null"),
        PolicyFilter("a", "not_null"),
    )
    check_policy_shape(_policy(filters=filters))


def test_windows_widen_when_sparse_and_narrow_when_full() -> None:
    assert next_window(1000, 10, 1000, 64_000) == 2000
    assert next_window(64_000, 10, 1000, 64_000) == 64_000
    assert next_window(4000, 1000, 1000, 64_000) == 2000
    assert next_window(1000, 900, 1000, 64_000) == 1000


def test_cursors_are_json_safe() -> None:
    assert json_cursor([1, "a", datetime(2026, 1, 1, tzinfo=UTC)]) == [1, "a", "2026-01-01 00:00:00+00:00"]
