"""A foreign-key-safe order: children before parents, and the tables of a cycle when none exists."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ("CycleError", "topological_order")


class CycleError(ValueError):
    """Foreign keys among row-deleted tables form a cycle: no deletion order exists."""

    def __init__(self, tables: Sequence[str]) -> None:
        self.tables = tuple(tables)
        super().__init__(f"foreign keys form a cycle among tables {', '.join(self.tables)}")


def topological_order(tables: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """Order ``tables`` so every child comes before its parents (stable: document order wins).

    ``edges`` are ``(child, parent)`` pairs (the child references the parent); pairs naming a
    table outside ``tables`` and self edges are ignored.

    Raises:
        CycleError: naming the tables on a cycle.
    """
    index = {t: i for i, t in enumerate(tables)}
    parents: dict[str, set[str]] = {t: set() for t in tables}
    children: dict[str, set[str]] = {t: set() for t in tables}
    for child, parent in edges:
        if child in index and parent in index and child != parent:
            parents[child].add(parent)
            children[parent].add(child)
    waiting = {t: len(children[t]) for t in tables}  # a table waits for its children
    ready = sorted((t for t in tables if waiting[t] == 0), key=index.__getitem__)
    order: list[str] = []
    while ready:
        table = ready.pop(0)
        order.append(table)
        for parent in sorted(parents[table], key=index.__getitem__):
            waiting[parent] -= 1
            if waiting[parent] == 0:
                ready.append(parent)
        ready.sort(key=index.__getitem__)
    if len(order) < len(tables):
        raise CycleError(_cycle(set(tables) - set(order), parents, index))
    return order


def _cycle(remaining: set[str], parents: dict[str, set[str]], index: dict[str, int]) -> list[str]:
    """One cycle among ``remaining``, from its first table along references (child -> parent).

    A table is left over because it waits for a child that is left over too (a parent of a cycle
    waits without being on it), so walking children first finds the tables of a cycle.
    """
    children = {t: {c for c in remaining if t in parents[c]} for t in remaining}
    node = min(remaining, key=index.__getitem__)
    seen: list[str] = []
    while node not in seen:
        seen.append(node)
        node = min(children[node], key=index.__getitem__)
    members = set(seen[seen.index(node) :])  # each has a parent among them
    node = min(members, key=index.__getitem__)
    cycle: list[str] = []
    while node not in cycle:
        cycle.append(node)
        node = min((p for p in parents[node] if p in members), key=index.__getitem__)
    return cycle[cycle.index(node) :]
