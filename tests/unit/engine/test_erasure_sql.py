"""Erasure statements compile per dialect: hop chains as IN subqueries, key as a placeholder."""

from __future__ import annotations

import msgspec
import pytest
from sqlalchemy import Column, ForeignKey, ForeignKeyConstraint, Integer, MetaData, String, Table
from sqlalchemy.dialects import mysql, postgresql, sqlite

from app.engine.erasure_sql import delete_statement, display_sql
from app.engine.schema_info import schema_from_metadata
from app.engine.subjects import Binds, path_condition
from app.manifest.graph import build_graph
from app.manifest.model import Manifest

DIALECTS = {"postgresql": postgresql.dialect(), "mysql": mysql.dialect(), "sqlite": sqlite.dialect()}

metadata = MetaData()
Table(
    "accounts", metadata, Column("tenant", Integer, primary_key=True), Column("id", Integer, primary_key=True)
)
Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", Integer),
    Column("account_id", Integer),
    ForeignKeyConstraint(
        ["tenant", "account_id"], ["accounts.tenant", "accounts.id"], name="fk_orders_account"
    ),
)
Table("items", metadata, Column("id", Integer, primary_key=True), Column("order_id", ForeignKey("orders.id")))
Table(
    "folders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_id", ForeignKey("folders.id")),
    Column("owner_tenant", Integer),
    Column("owner_id", Integer),
    Column("name", String(40)),
)

MANIFEST = msgspec.convert(
    {
        "system": "unit",
        "connection": {"env": "X"},
        "subject": {"table": "accounts", "key": ["tenant", "id"], "identities": {"id": "id"}},
        "tables": {
            "orders": {"strategy": "delete"},
            "items": {"strategy": "delete"},
            "folders": {
                "strategy": "delete",
                "link": {
                    "path": [
                        {"from": "parent_id", "to": "folders", "to_columns": "id"},
                        {"from": ["owner_tenant", "owner_id"], "to": "accounts"},
                    ]
                },
            },
        },
    },
    Manifest,
)


def _sql(table: str, dialect: str) -> str:
    graph = build_graph(MANIFEST, schema_from_metadata(metadata))
    tables = dict(metadata.tables)
    (path,) = graph.paths_for(table)
    condition = path_condition(path, tables, graph.subject_key, Binds(None), dialect=dialect)
    return display_sql(delete_statement(tables[table], condition), DIALECTS[dialect])


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_composite_key_hop_compares_with_the_key_directly(dialect: str) -> None:
    sql = _sql("orders", dialect)
    assert "orders.tenant = :subject_key_0" in sql
    assert "orders.account_id = :subject_key_1" in sql
    assert "SELECT" not in sql


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_multi_hop_becomes_an_in_subquery(dialect: str) -> None:
    sql = _sql("items", dialect)
    assert "items.order_id IN (SELECT orders_1.id FROM orders AS orders_1 WHERE" in sql


def test_self_reference_is_wrapped_on_mysql_only() -> None:
    assert "DISTINCT" in _sql("folders", "mysql")
    assert "DISTINCT" not in _sql("folders", "postgresql")
    assert "folders_1" in _sql("folders", "postgresql")  # an alias, never correlated


def test_bound_key_values_never_appear_in_display() -> None:
    graph = build_graph(MANIFEST, schema_from_metadata(metadata))
    (path,) = graph.paths_for("orders")
    condition = path_condition(
        path, dict(metadata.tables), graph.subject_key, Binds((7, 4242)), dialect="postgresql"
    )
    compiled = delete_statement(metadata.tables["orders"], condition).compile(dialect=DIALECTS["postgresql"])
    assert "4242" not in str(compiled)
    assert compiled.params["subject_key_1"] == 4242
