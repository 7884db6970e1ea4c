"""Subject paths compile to nested IN subqueries (the SQL every engine runs to find the subject's rows)."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, Table, select
from sqlalchemy.dialects import sqlite

from app.engine.subjects import Binds, path_condition
from app.manifest.graph import build_graph
from tests.unit.manifest.factories import fk, manifest, schema, table


def _metadata() -> dict[str, Table]:
    metadata = MetaData()
    return {
        "users": Table("users", metadata, Column("id", Integer, primary_key=True)),
        "orders": Table(
            "orders", metadata, Column("id", Integer, primary_key=True), Column("user_id", Integer)
        ),
        "order_items": Table(
            "order_items",
            metadata,
            Column("id", Integer, primary_key=True),
            Column("order_id", Integer),
        ),
    }


def test_multi_hop_path_compiles_to_nested_subqueries() -> None:
    s = schema(
        table("users"),
        table("orders", "user_id", fks=(fk("orders", "user_id", "users"),)),
        table("order_items", "order_id", fks=(fk("order_items", "order_id", "orders"),)),
    )
    graph = build_graph(manifest({"orders": {}, "order_items": {}}), s)
    tables = _metadata()
    (path,) = graph.paths_for("order_items")
    statement = select(tables["order_items"].c.id).where(
        path_condition(path, tables, ("id",), Binds((7,)), dialect="sqlite")
    )
    sql = " ".join(
        str(statement.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})).split()
    )
    assert sql == (
        "SELECT order_items.id FROM order_items WHERE order_items.order_id IN "
        "(SELECT orders_1.id FROM orders AS orders_1 WHERE orders_1.user_id = 7)"
    )


def test_subject_table_path_is_the_key_condition() -> None:
    s = schema(table("users"))
    tables = _metadata()
    (path,) = build_graph(manifest({"users": {}}), s).paths_for("users")
    condition = path_condition(path, tables, ("id",), Binds((3,)), dialect="sqlite")
    assert str(condition.compile(compile_kwargs={"literal_binds": True})) == "users.id = 3"
