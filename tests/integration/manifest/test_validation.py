"""Each validation error (and the outside-reference risk) on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from typing import Any

from app.manifest.issues import Issue
from app.manifest.validation import validate
from tests.integration.manifest.conftest import LabTarget
from tests.integration.manifest.helpers import lab_manifest

RETAIN = {"legal_basis": "tax law", "duration": "P10Y"}


def _issues(lab: LabTarget, tables: dict[str, Any], **extra: Any) -> list[Issue]:
    return validate(lab_manifest(tables, **extra), lab.schema)[1]


def _only(issues: list[Issue], kind: str) -> Issue:
    matching = [i for i in issues if i.kind == kind]
    assert len(matching) == 1, issues
    return matching[0]


async def test_valid_manifest_has_no_errors(lab: LabTarget) -> None:
    issues = _issues(
        lab,
        {
            "users": {
                "strategy": "anonymize",
                "columns": {"email": {"category": "user.contact.email", "surrogate": "email"}},
            },
            "orders": {
                "strategy": "retain",
                "retention": RETAIN,
                "columns": {"note": {"category": "user.content", "strategy": "delete"}},
            },
            "order_items": {"strategy": "retain", "retention": RETAIN},
            "profiles": {"strategy": "delete"},
            "audit_trail": {"strategy": "anonymize"},
        },
    )
    assert [i for i in issues if i.severity != "finding"] == []


async def test_unknown_table(lab: LabTarget) -> None:
    issue = _only(_issues(lab, {"invoices": {}}), "unknown_table")
    assert issue.path == "tables.invoices"
    assert "'invoices'" in issue.message


async def test_unknown_column(lab: LabTarget) -> None:
    issue = _only(
        _issues(lab, {"orders": {"columns": {"remark": {"category": "user.content"}}}}), "unknown_column"
    )
    assert issue.path == "tables.orders.columns.remark"
    assert "'orders.remark'" in issue.message


async def test_unknown_link_column(lab: LabTarget) -> None:
    issue = _only(
        _issues(lab, {"orders": {"link": {"path": [{"from": "owner_id", "to": "users"}]}}}), "unknown_column"
    )
    assert issue.path == "tables.orders.link.path[0].from"
    assert "'orders.owner_id'" in issue.message


async def test_link_not_reaching_subject(lab: LabTarget) -> None:
    issue = _only(
        _issues(lab, {"order_items": {"link": {"path": [{"from": "order_id", "to": "orders"}]}}}),
        "link_not_reaching_subject",
    )
    assert issue.table == "order_items"
    assert "'order_items' ends at 'orders'" in issue.message


async def test_cycle_among_deleted_tables(lab: LabTarget) -> None:
    tables = {
        "authors": {"strategy": "delete"},
        "posts": {
            "strategy": "delete",
            "link": {"path": [{"from": "author_id", "to": "authors"}, {"from": "user_id", "to": "users"}]},
        },
    }
    issue = _only(_issues(lab, tables), "cycle")
    assert "cycle among row-deleted tables authors -> posts -> authors" in issue.message
    tables["posts"]["strategy"] = "anonymize"  # breaking the cycle: only authors rows go
    assert [i for i in _issues(lab, tables) if i.kind == "cycle"] == []


async def test_surviving_table_through_deleted_table(lab: LabTarget) -> None:
    issue = _only(
        _issues(
            lab,
            {"orders": {"strategy": "delete"}, "order_items": {"strategy": "retain", "retention": RETAIN}},
        ),
        "survivor_through_deleted",
    )
    assert issue.table == "order_items"
    assert "'order_items' survives erasure" in issue.message
    assert "through 'orders'" in issue.message


async def test_foreign_key_from_unmanaged_table_is_a_risk(lab: LabTarget) -> None:
    issues = _issues(
        lab,
        {
            "users": {"strategy": "delete"},
            "orders": {"strategy": "delete"},
            "order_items": {"strategy": "delete"},
        },
    )
    risks = {i.table: i for i in issues if i.kind == "outside_reference"}
    assert risks["audit_trail"].severity == "risk"
    assert "fk_audit_trail_user" in risks["audit_trail"].message
    assert "unmanaged table 'audit_trail'" in risks["audit_trail"].message
    assert "from 'users'" in risks["audit_trail"].message


async def test_not_null_column_cannot_be_deleted(lab: LabTarget) -> None:
    issue = _only(
        _issues(lab, {"profiles": {"columns": {"nick": {"category": "user.name", "strategy": "delete"}}}}),
        "not_null_delete",
    )
    assert issue.path == "tables.profiles.columns.nick.strategy"
    assert "'profiles.nick' is NOT NULL" in issue.message


async def test_not_null_column_cannot_take_null_surrogate(lab: LabTarget) -> None:
    issue = _only(
        _issues(lab, {"profiles": {"columns": {"nick": {"category": "user.name", "surrogate": "null"}}}}),
        "not_null_delete",
    )
    assert "'profiles.nick'" in issue.message


async def test_unique_column_cannot_take_a_constant(lab: LabTarget) -> None:
    issue = _only(
        _issues(
            lab,
            {
                "profiles": {
                    "columns": {
                        "code": {
                            "category": "user.unique_id",
                            "surrogate": {"kind": "constant", "value": "X"},
                        }
                    }
                }
            },
        ),
        "unique_constant",
    )
    assert issue.path == "tables.profiles.columns.code.surrogate"
    assert "'profiles.code' is UNIQUE" in issue.message


async def test_column_too_short_for_surrogate(lab: LabTarget) -> None:
    issue = _only(
        _issues(lab, {"profiles": {"columns": {"code": {"category": "user.unique_id"}}}}),
        "surrogate_too_long",
    )
    assert issue.path == "tables.profiles.columns.code.surrogate"
    assert "'profiles.code' holds at most 8 characters" in issue.message
    constant = _only(
        _issues(
            lab,
            {
                "profiles": {
                    "columns": {
                        "motto": {
                            "category": "user.content",
                            "surrogate": {"kind": "constant", "value": "redacted"},
                        }
                    }
                }
            },
        ),
        "surrogate_too_long",
    )
    assert "'profiles.motto' holds at most 5 characters" in constant.message


async def test_retain_without_legal_basis(lab: LabTarget) -> None:
    issue = _only(_issues(lab, {"orders": {"strategy": "retain"}}), "retain_without_basis")
    assert issue.path == "tables.orders.retention"
    assert "'orders' is retained" in issue.message
    column = _only(
        _issues(lab, {"orders": {"columns": {"note": {"category": "user.content", "strategy": "retain"}}}}),
        "retain_without_basis",
    )
    assert "'orders.note' is retained" in column.message


async def test_retention_policy_columns_checked(lab: LabTarget) -> None:
    policies = [{"name": "old", "table": "orders", "age_column": "placed_at", "older_than": "P1Y"}]
    issue = _only(_issues(lab, {"orders": {}}, retention_policies=policies), "unknown_column")
    assert issue.path == "retention_policies[0].age_column"
    assert "'orders.placed_at'" in issue.message
