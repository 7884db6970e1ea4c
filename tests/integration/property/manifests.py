"""The manifest of a generated schema: ``lethe manifest scaffold``'s draft, then random strategies,
surrogates, retention, a join-table link and links for rows shared by two subjects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from app.manifest.scaffold import scaffold
from app.manifest.schema import SchemaInfo
from tests.integration.property.generated import Design

__all__ = ("Choices", "randomized_manifest", "repair")

RETENTION = {"legal_basis": "kept by law for the test", "duration": "P1Y"}
_SURROGATES: tuple[Any, ...] = (
    None,
    None,
    "null",
    "unique",
    "email",
    "redacted",
    "hash",
    "zero",
    "epoch",
    {"kind": "constant", "value": "gone"},
)


class Choices:
    """Random decisions drawn up front by hypothesis, consumed in order (0 when exhausted)."""

    def __init__(self, values: list[int]) -> None:
        self._values: Iterator[int] = iter(values)

    def pick(self, options: tuple[Any, ...] | list[Any]) -> Any:
        """One of ``options``."""
        return options[next(self._values, 0) % len(options)]


def _column(spec: dict[str, Any], choices: Choices) -> None:
    strategy = choices.pick(("anonymize", "anonymize", "delete", "retain"))
    spec["strategy"] = strategy
    if strategy == "retain":
        spec["retention"] = dict(RETENTION)
    elif strategy == "anonymize" and (surrogate := choices.pick(_SURROGATES)) is not None:
        spec["surrogate"] = surrogate


def _table(spec: dict[str, Any], choices: Choices, subject: bool) -> None:
    options = ("anonymize", "anonymize", "retain") if subject else ("delete", "anonymize", "retain")
    spec["strategy"] = choices.pick(options)
    if spec["strategy"] == "retain":
        spec["retention"] = dict(RETENTION)
    for column in (spec.get("columns") or {}).values():
        _column(column, choices)


def _shared_links(document: dict[str, Any], design: Design, choices: Choices) -> None:
    if "messages" not in design.children:
        return
    spec = document["tables"].get(design.key("messages", "messages"))
    person = design.key("person", "person")
    if spec is None or not choices.pick((True, False)):
        return
    spec.pop("link", None)
    spec["links"] = {
        "sender": {"path": [{"from": "sender_id", "to": person}], "columns": ["body"]},
        "recipient": {"path": [{"from": "recipient_id", "to": person}]},
    }
    spec.setdefault("columns", {})["body"] = {"category": "user.content"}


def _join_table(document: dict[str, Any], design: Design, choices: Choices) -> None:
    if "teams" not in design.children or not choices.pick((True, False)):
        return
    spec: dict[str, Any] = {
        "link": {
            "path": [
                {"from": "id", "to": design.key("team_members", "teams"), "to_columns": "team_id"},
                {"from": "person_id", "to": design.key("person", "person")},
            ]
        },
        "columns": {"title": {"category": "user.content"}},
    }
    _table(spec, choices, subject=False)
    document["tables"][design.key("teams", "teams")] = spec


def randomized_manifest(
    schema: SchemaInfo,
    design: Design,
    system: str,
    env_var: str,
    choices: Choices,
) -> dict[str, Any]:
    """The scaffold's draft of ``schema`` with random strategies (a dict ready to register)."""
    draft = scaffold(schema, system=system, env_var=env_var, subject_table=design.key("person", "person"))
    document: dict[str, Any] = yaml.safe_load(draft)
    if len(design.schemas) > 1:
        document["connection"]["schemas"] = [s for s in design.schemas if s is not None]
    subject = document["subject"]["table"]
    covered = document["tables"].setdefault(subject, {}).setdefault("columns", {})
    for column in design.subject_columns:  # those the scaffold's name rules do not recognise
        covered.setdefault(column, {"category": "user.profile"})
    for name, spec in document["tables"].items():
        _table(spec, choices, subject=name == subject)
    _shared_links(document, design, choices)
    _join_table(document, design, choices)
    return document


def repair(document: dict[str, Any], errors: list[dict[str, str]]) -> None:
    """Undo the random choices validation refused: a named column goes back to the type-aware
    default, a named table (and every managed table its message names) to ``anonymize``."""
    tables: dict[str, Any] = document["tables"]
    for error in errors:
        parts = error["field"].split(".")
        if parts[0] != "tables" or len(parts) < 2:
            continue
        name = next(
            (t for t in sorted(tables, key=len, reverse=True) if error["field"].startswith(f"tables.{t}.")),
            None,
        )
        if name is None:
            continue
        rest = error["field"][len(f"tables.{name}.") :].split(".")
        spec = tables[name]
        if rest[0] == "columns" and len(rest) > 1 and rest[1] in spec.get("columns", {}):
            column = spec["columns"][rest[1]]
            spec["columns"][rest[1]] = {"category": column["category"]}
            continue
        for other in [name, *(t for t in tables if f"'{t}'" in error["message"])]:
            tables[other]["strategy"] = "anonymize"
            tables[other].pop("retention", None)
            for column in tables[other].get("columns", {}).values():
                if column.get("strategy") == "retain" and "retention" not in column:
                    column["retention"] = dict(RETENTION)
