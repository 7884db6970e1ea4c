"""Each link kind resolves on SQLite, PostgreSQL and MariaDB and selects exactly the subject's rows."""

from __future__ import annotations

from app.manifest.graph import build_graph
from app.manifest.validation import validate
from tests.integration.manifest.conftest import LabTarget
from tests.integration.manifest.helpers import lab_manifest, rows_of


async def test_derived_multi_hop_link(lab: LabTarget) -> None:
    graph = build_graph(lab_manifest({"orders": {}, "order_items": {}}), lab.schema)
    (path,) = graph.paths_for("order_items")
    assert path.derived
    assert [str(s) for s in path.steps] == [
        "order_items(order_id) -> orders(id)",
        "orders(user_id) -> users(id)",
    ]
    assert await rows_of(lab, path, 1) == {(100,), (101,)}
    assert await rows_of(lab, path, 2) == {(200,)}


async def test_written_multi_hop_link(lab: LabTarget) -> None:
    manifest = lab_manifest(
        {
            "order_items": {
                "link": {"path": [{"from": "order_id", "to": "orders"}, {"from": "user_id", "to": "users"}]}
            }
        }
    )
    (path,) = build_graph(manifest, lab.schema).paths_for("order_items")
    assert not path.derived
    assert path.steps[0].foreign_key == "fk_order_items_order"
    assert await rows_of(lab, path, 1) == {(100,), (101,)}


async def test_composite_key_and_logical_reference(lab: LabTarget) -> None:
    manifest = lab_manifest(
        {
            "tickets": {"link": {"path": [{"from": "user_ref", "to": "users"}]}},
            "ticket_notes": {
                "link": {
                    "path": [
                        {"from": ["tenant_id", "ticket_id"], "to": "tickets"},
                        {"from": "user_ref", "to": "users"},
                    ]
                }
            },
        }
    )
    graph = build_graph(manifest, lab.schema)
    (tickets,) = graph.paths_for("tickets")
    assert tickets.steps[0].kind == "logical"
    (notes,) = graph.paths_for("ticket_notes")
    assert notes.steps[0].to_columns == ("tenant_id", "id")
    assert notes.steps[0].foreign_key == "fk_ticket_notes_ticket"
    assert await rows_of(lab, tickets, 2) == {(2, 1)}
    assert await rows_of(lab, notes, 1) == {(1,)}
    assert await rows_of(lab, notes, 2) == {(2,)}


async def test_self_reference(lab: LabTarget) -> None:
    manifest = lab_manifest(
        {
            "folders": {
                "links": {
                    "owned": {"path": [{"from": "owner_id", "to": "users"}]},
                    "nested": {
                        "path": [{"from": "parent_id", "to": "folders"}, {"from": "owner_id", "to": "users"}]
                    },
                }
            }
        }
    )
    graph = build_graph(manifest, lab.schema)
    owned, nested = graph.paths_for("folders")
    assert nested.steps[0].foreign_key == "fk_folders_parent"
    assert [f.name for f in graph.self_references["folders"]] == ["fk_folders_parent"]
    assert await rows_of(lab, owned, 1) == {(1,)}
    assert await rows_of(lab, nested, 1) == {(2,)}
    assert await rows_of(lab, nested, 2) == {(4,)}


async def test_join_table_many_to_many(lab: LabTarget) -> None:
    manifest = lab_manifest(
        {
            "team_members": {"strategy": "delete"},
            "teams": {
                "link": {
                    "path": [
                        {"from": "id", "to": "team_members", "to_columns": "team_id"},
                        {"from": "user_id", "to": "users"},
                    ]
                }
            },
        }
    )
    graph = build_graph(manifest, lab.schema)
    (members,) = graph.paths_for("team_members")
    assert members.derived
    (teams,) = graph.paths_for("teams")
    assert [s.kind for s in teams.steps] == ["reverse_foreign_key", "foreign_key"]
    assert await rows_of(lab, teams, 1) == {(1,), (2,)}
    assert await rows_of(lab, teams, 2) == {(2,), (3,)}
    assert await rows_of(lab, members, 2) == {(2, 2), (3, 2)}


async def test_rows_shared_by_two_subjects(lab: LabTarget) -> None:
    manifest = lab_manifest(
        {
            "messages": {
                "links": {
                    "sender": {"path": [{"from": "sender_id", "to": "users"}], "columns": ["sender_name"]},
                    "recipient": {
                        "path": [{"from": "recipient_id", "to": "users"}],
                        "columns": ["recipient_name"],
                    },
                },
                "columns": {
                    "sender_name": {"category": "user.name"},
                    "recipient_name": {"category": "user.name"},
                },
            }
        }
    )
    graph, issues = validate(manifest, lab.schema)
    assert [i for i in issues if i.severity == "error"] == []
    assert graph is not None
    sender, recipient = graph.paths_for("messages")
    assert (sender.owned_columns, recipient.owned_columns) == (("sender_name",), ("recipient_name",))
    assert await rows_of(lab, sender, 1) == {(1,)}
    assert await rows_of(lab, recipient, 1) == {(2,)}
    assert await rows_of(lab, recipient, 2) == {(1,), (3,)}


async def test_ambiguous_and_missing_links_are_named(lab: LabTarget) -> None:
    _, issues = validate(lab_manifest({"messages": {}, "tickets": {}}), lab.schema)
    by_table = {i.table: i for i in issues if i.severity == "error"}
    assert by_table["messages"].kind == "ambiguous_link"
    assert "messages(sender_id) -> users(id)" in by_table["messages"].message
    assert "messages(recipient_id) -> users(id)" in by_table["messages"].message
    assert by_table["tickets"].kind == "no_link"
    assert "'tickets'" in by_table["tickets"].message
