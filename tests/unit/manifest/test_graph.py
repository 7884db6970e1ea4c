"""The subject graph: derived and written links, and the FK-safe deletion order."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.lib.errors import ManifestInvalid
from app.manifest.graph import CycleError, analyse_graph, build_graph, topological_order
from app.manifest.lint import lint
from tests.unit.manifest.factories import fk, manifest, schema, table

SHOP = schema(
    table("users", "email"),
    table("addresses", "user_id", "street", fks=(fk("addresses", "user_id", "users"),)),
    table(
        "orders",
        "user_id",
        "shipping_address_id",
        "note",
        fks=(fk("orders", "user_id", "users"), fk("orders", "shipping_address_id", "addresses")),
    ),
    table("order_items", "order_id", "sku", fks=(fk("order_items", "order_id", "orders"),)),
)


def test_single_fk_path_is_derived_multi_hop() -> None:
    graph = build_graph(manifest({"users": {}, "addresses": {}}), SHOP)
    (path,) = graph.paths_for("addresses")
    assert path.derived
    assert [str(s) for s in path.steps] == ["addresses(user_id) -> users(id)"]
    assert graph.paths_for("users")[0].steps == ()


def test_two_fk_paths_are_ambiguous_and_named() -> None:
    _, issues = analyse_graph(manifest({"addresses": {}, "orders": {}}), SHOP)
    (issue,) = issues
    assert issue.kind == "ambiguous_link"
    assert issue.path == "tables.orders.link"
    assert "orders(shipping_address_id) -> addresses(id)" in issue.message
    assert "2 foreign-key paths" in issue.message


def test_written_link_resolves_multi_hop_with_default_key() -> None:
    m = manifest(
        {
            "orders": {"link": {"path": [{"from": "user_id", "to": "users"}]}},
            "order_items": {
                "link": {
                    "path": [
                        {"from": "order_id", "to": "orders"},
                        {"from": "user_id", "to": "users"},
                    ]
                }
            },
        }
    )
    graph = build_graph(m, SHOP)
    (path,) = graph.paths_for("order_items")
    assert path.tables == ("orders", "users")
    assert all(s.kind == "foreign_key" for s in path.steps)
    assert path.steps[0].foreign_key == "fk_order_items_order_id"


def test_shared_rows_have_one_path_per_link_with_owned_columns() -> None:
    s = schema(
        table("users"),
        table(
            "messages",
            "sender_id",
            "recipient_id",
            "sender_name",
            "recipient_name",
            "body",
            fks=(fk("messages", "sender_id", "users"), fk("messages", "recipient_id", "users")),
        ),
    )
    m = manifest(
        {
            "messages": {
                "links": {
                    "sender": {
                        "path": [{"from": "sender_id", "to": "users"}],
                        "columns": ["sender_name"],
                    },
                    "recipient": {
                        "path": [{"from": "recipient_id", "to": "users"}],
                        "columns": ["recipient_name"],
                    },
                }
            }
        }
    )
    paths = build_graph(m, s).paths_for("messages")
    assert [(p.link, p.owned_columns) for p in paths] == [
        ("sender", ("sender_name",)),
        ("recipient", ("recipient_name",)),
    ]


def test_join_table_hop_is_a_reverse_foreign_key() -> None:
    s = schema(
        table("users"),
        table("groups", "title"),
        table(
            "group_members",
            "group_id",
            "user_id",
            pk=("group_id", "user_id"),
            fks=(
                fk("group_members", "group_id", "groups"),
                fk("group_members", "user_id", "users"),
            ),
        ),
    )
    m = manifest(
        {
            "groups": {
                "link": {
                    "path": [
                        {"from": "id", "to": "group_members", "to_columns": "group_id"},
                        {"from": "user_id", "to": "users"},
                    ]
                }
            }
        }
    )
    (path,) = build_graph(m, s).paths_for("groups")
    assert [s.kind for s in path.steps] == ["reverse_foreign_key", "foreign_key"]


def test_logical_reference_and_composite_key() -> None:
    s = schema(
        table("users", "tenant_id"),
        table("tickets", "tenant_id", "user_ref", pk=("tenant_id", "id")),
        table(
            "ticket_notes",
            "tenant_id",
            "ticket_id",
            fks=(fk("ticket_notes", ("tenant_id", "ticket_id"), "tickets", ("tenant_id", "id")),),
        ),
    )
    m = manifest(
        {
            "tickets": {"link": {"path": [{"from": ["user_ref"], "to": "users", "to_columns": ["id"]}]}},
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
    graph = build_graph(m, s)
    assert graph.paths_for("tickets")[0].steps[0].kind == "logical"
    step = graph.paths_for("ticket_notes")[0].steps[0]
    assert (step.to_columns, step.kind) == (("tenant_id", "id"), "foreign_key")


def test_self_reference_hop_and_self_references_reported() -> None:
    s = schema(
        table("users"),
        table(
            "folders",
            "owner_id",
            "parent_id",
            fks=(fk("folders", "owner_id", "users"), fk("folders", "parent_id", "folders")),
        ),
    )
    m = manifest(
        {
            "folders": {
                "strategy": "delete",
                "links": {
                    "owned": {"path": [{"from": "owner_id", "to": "users"}]},
                    "nested": {
                        "path": [
                            {"from": "parent_id", "to": "folders"},
                            {"from": "owner_id", "to": "users"},
                        ]
                    },
                },
            }
        }
    )
    graph = build_graph(m, s)
    assert graph.paths_for("folders")[1].tables == ("folders", "users")
    assert graph.deletion_order == ("folders",)
    assert [f.name for f in graph.self_references["folders"]] == ["fk_folders_parent_id"]


def test_link_not_reaching_subject_and_unknown_names() -> None:
    m = manifest(
        {
            "order_items": {"link": {"path": [{"from": "order_id", "to": "orders"}]}},
            "addresses": {"link": {"path": [{"from": "user_idd", "to": "users"}]}},
            "ghosts": {},
        }
    )
    _, issues = analyse_graph(m, SHOP)
    kinds = {(i.kind, i.path) for i in issues}
    assert ("link_not_reaching_subject", "tables.order_items.link.path") in kinds
    assert ("unknown_column", "tables.addresses.link.path[0].from") in kinds
    assert ("unknown_table", "tables.ghosts") in kinds


def test_deletion_order_children_first_and_cycle_named() -> None:
    m = manifest(
        {
            "users": {"strategy": "delete"},
            "addresses": {"strategy": "delete"},
            "orders": {
                "strategy": "delete",
                "link": {"path": [{"from": "user_id", "to": "users"}]},
            },
            "order_items": {"strategy": "delete"},
        }
    )
    order = build_graph(m, SHOP).deletion_order
    assert (
        order.index("order_items") < order.index("orders") < order.index("addresses") < order.index("users")
    )
    cyclic = schema(
        table("users", "favourite_id", fks=(fk("users", "favourite_id", "addresses"),)),
        *list(SHOP.tables.values())[1:2],
    )
    with pytest.raises(ManifestInvalid, match="cycle among row-deleted tables users -> addresses -> users"):
        build_graph(manifest({"users": {"strategy": "delete"}, "addresses": {"strategy": "delete"}}), cyclic)


def test_topological_order_reports_only_cycle_members() -> None:
    with pytest.raises(CycleError) as caught:
        topological_order(["a", "b", "c", "d"], [("d", "a"), ("a", "b"), ("b", "c"), ("c", "a")])
    assert set(caught.value.tables) == {"a", "b", "c"}


@st.composite
def acyclic_schemas(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str]]]:
    """Tables t0..tn; an FK may only point from a later table to an earlier one (so acyclic),
    then the table list is shuffled so the input order says nothing."""
    count = draw(st.integers(min_value=1, max_value=12))
    names = [f"t{i}" for i in range(count)]
    edges = draw(
        st.lists(
            st.tuples(st.integers(0, count - 1), st.integers(0, count - 1))
            .filter(lambda e: e[0] > e[1])
            .map(lambda e: (names[e[0]], names[e[1]])),
            max_size=30,
        )
    )
    return draw(st.permutations(names)), edges


@settings(max_examples=300, deadline=None)
@given(acyclic_schemas())
def test_order_never_deletes_a_parent_before_a_child(
    case: tuple[list[str], list[tuple[str, str]]],
) -> None:
    tables, edges = case
    order = topological_order(tables, edges)
    assert sorted(order) == sorted(tables)
    position = {t: i for i, t in enumerate(order)}
    for child, parent in edges:
        assert position[child] < position[parent], (child, parent, order)


@settings(max_examples=100, deadline=None)
@given(acyclic_schemas())
def test_graph_deletion_order_follows_reflected_foreign_keys(
    case: tuple[list[str], list[tuple[str, str]]],
) -> None:
    tables, edges = case
    s = schema(
        table("users"),
        *(
            table(
                t,
                *(f"{p}_id" for c, p in edges if c == t),
                fks=tuple(fk(t, f"{p}_id", p) for c, p in edges if c == t),
            )
            for t in tables
        ),
    )
    hop = {"from": "id", "to": "users", "logical": True, "reason": "ordering only"}
    links = {t: {"strategy": "delete", "link": {"path": [hop]}} for t in tables}
    order = build_graph(manifest(links), s).deletion_order
    position = {t: i for i, t in enumerate(order)}
    for child, parent in set(edges):
        assert position[child] < position[parent]


def test_dense_schemas_stay_fast() -> None:
    """Every table references every earlier one: exponentially many paths, bounded work."""

    names = [f"t{i}" for i in range(40)]
    tables = [table("users")]
    for i, name in enumerate(names):
        parents = ["users", *names[:i]]
        tables.append(
            table(name, *(f"{p}_id" for p in parents), fks=tuple(fk(name, f"{p}_id", p) for p in parents))
        )
    started = time.monotonic()
    _, issues = analyse_graph(manifest({n: {} for n in names}), schema(*tables))
    lint(manifest({}), schema(*tables))
    assert time.monotonic() - started < 5
    assert {i.kind for i in issues} == {"ambiguous_link"}
