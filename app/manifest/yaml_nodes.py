"""Checks on the YAML node tree that decoding would hide: duplicate keys and bare ``null`` surrogates."""

from __future__ import annotations

import yaml

from app.manifest.issues import Issue, IssueKind

__all__ = ("node_issues",)

_NULL_TAG = "tag:yaml.org,2002:null"


def _key_name(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{node.tag}>"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _issue(kind: IssueKind, where: str, message: str) -> Issue:
    """An issue located by its key path; ``tables.<t>.columns.<c>...`` also names table and column."""
    parts = where.split(".")
    table = parts[1] if len(parts) > 1 and parts[0] == "tables" else None
    column = parts[3] if len(parts) > 3 and parts[0] == "tables" and parts[2] == "columns" else None
    return Issue(kind=kind, path=where, message=message, table=table, column=column)


def node_issues(root: yaml.Node | None) -> list[Issue]:
    """Every duplicate mapping key (at any depth, with both line numbers) and every
    ``surrogate:`` whose value is a bare YAML null (``null``, ``~`` or nothing), which would
    silently mean "the default surrogate" while ``"null"`` means the NULL surrogate."""
    issues: list[Issue] = []
    stack: list[tuple[yaml.Node, str]] = [] if root is None else [(root, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{index}]") for index, item in reversed(list(enumerate(node.value))))
        elif isinstance(node, yaml.MappingNode):
            issues += _mapping_issues(node, path)
            stack.extend((value, _join(path, _key_name(key))) for key, value in reversed(node.value))
    return issues


def _mapping_issues(node: yaml.MappingNode, path: str) -> list[Issue]:
    issues: list[Issue] = []
    seen: dict[str, int] = {}
    for key, value in node.value:
        name = _key_name(key)
        line = key.start_mark.line + 1
        where = _join(path, name)
        if name in seen:
            issues.append(
                _issue(
                    "duplicate_key",
                    where,
                    f"key '{where}' appears twice (lines {seen[name]} and {line}); "
                    "only the last would count: merge them",
                )
            )
        else:
            seen[name] = line
        if name == "surrogate" and isinstance(value, yaml.ScalarNode) and value.tag == _NULL_TAG:
            issues.append(
                _issue(
                    "ambiguous_surrogate",
                    where,
                    f"'{where}' is a bare YAML null (line {line}): omit `surrogate` for the "
                    'type-aware default, or write `surrogate: "null"` (quoted) for the NULL surrogate',
                )
            )
    return issues
