"""Links: resolve written hop chains and derive the others from reflected foreign keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.manifest.issues import Issue
from app.manifest.model import Link, Manifest, TableSpec
from app.manifest.schema import SchemaInfo, TableInfo

__all__ = (
    "MAX_CANDIDATES",
    "MAX_DERIVED_HOPS",
    "LinkResolver",
    "Step",
    "StepKind",
    "SubjectPath",
    "candidate_paths",
)

MAX_DERIVED_HOPS = 6
"""Longest path searched when a link is derived from foreign keys."""
MAX_CANDIDATES = 64
"""Most foreign-key chains listed for one table (two already make a link ambiguous)."""

StepKind = Literal["foreign_key", "reverse_foreign_key", "logical"]


@dataclass(frozen=True)
class Step:
    """One resolved hop: rows of ``from_table`` whose ``from_columns`` equal ``to_columns`` of
    the ``to_table`` rows selected by the next step (or by the subject key, for the last step).

    ``kind`` says what backs the hop: ``foreign_key`` (``from_table`` references ``to_table``,
    the usual child -> parent direction), ``reverse_foreign_key`` (``to_table`` references
    ``from_table``, e.g. from ``groups`` into the join table ``group_members``), or ``logical``
    (no constraint declares it). ``foreign_key`` is the backing constraint's name, if any.
    """

    from_table: str
    from_columns: tuple[str, ...]
    to_table: str
    to_columns: tuple[str, ...]
    kind: StepKind = "foreign_key"
    foreign_key: str | None = None
    cast: str | None = None
    """The type ``from_columns`` are cast to before the comparison (the hop's ``cast:``)."""

    def __str__(self) -> str:
        return (
            f"{self.from_table}({', '.join(self.from_columns)}) -> "
            f"{self.to_table}({', '.join(self.to_columns)})"
        )


@dataclass(frozen=True)
class SubjectPath:
    """How the rows of ``table`` reached through one link belong to the subject.

    ``link`` is ``"subject"`` for the subject table itself (no steps: its rows are selected by
    the subject key), ``"default"`` for a table's single ``link``, or the name given under
    ``links``. ``owned_columns`` are the columns this link owns on a shared row (empty: all
    columns). ``derived`` tells that the path was found from foreign keys, not written out.
    """

    table: str
    link: str
    steps: tuple[Step, ...]
    owned_columns: tuple[str, ...] = ()
    derived: bool = False

    @property
    def tables(self) -> tuple[str, ...]:
        """Every table the path passes through after its own (the subject table last)."""
        return tuple(step.to_table for step in self.steps)

    def describe(self) -> str:
        """``order_items(order_id) -> orders(id) -> ...`` for messages and plans."""
        return " / ".join(str(step) for step in self.steps) or f"{self.table} (subject table)"


def candidate_paths(
    schema: SchemaInfo,
    table: str,
    targets: set[str] | str,
    max_hops: int = MAX_DERIVED_HOPS,
    limit: int = MAX_CANDIDATES,
) -> list[tuple[Step, ...]]:
    """Every simple chain of declared foreign keys (child -> parent) from ``table`` that ends at
    the first table of ``targets`` it meets (the managed tables, or just the subject table).

    Self references are not followed. A link is derived only when exactly one chain exists;
    the chain is then continued by the path of the managed table it ends at. The search stops
    after ``limit`` chains (dense schemas have exponentially many).
    """
    stops = {targets} if isinstance(targets, str) else targets
    found: list[tuple[Step, ...]] = []

    def walk(current: str, visited: tuple[str, ...], steps: tuple[Step, ...]) -> None:
        if current in stops and steps:
            found.append(steps)
            return
        if len(found) >= limit or len(steps) >= max_hops or current not in schema.tables:
            return
        for fk in schema.tables[current].foreign_keys:
            if fk.referred_table in visited:
                continue
            step = Step(current, fk.columns, fk.referred_table, fk.referred_columns, "foreign_key", fk.name)
            walk(fk.referred_table, (*visited, fk.referred_table), (*steps, step))

    walk(table, (table,), ())
    return found


def _resolve_step(
    schema: SchemaInfo,
    manifest: Manifest,
    from_table: str,
    hop_index: int,
    link: Link,
    where: str,
    issues: list[Issue],
) -> Step | None:
    hop = link.path[hop_index]
    path = f"{where}.path[{hop_index}]"
    from_columns = tuple(hop.from_columns)
    target = schema.tables.get(hop.to)
    if target is None:
        issues.append(
            Issue(
                kind="unknown_table",
                path=f"{path}.to",
                table=hop.to,
                message=f"link hop names table '{hop.to}', which does not exist",
            )
        )
        return None
    if hop.to_columns is not None:
        to_columns = tuple(hop.to_columns)
    elif hop.to == manifest.subject.table:
        to_columns = manifest.subject.key_columns
    else:
        to_columns = target.primary_key
    if len(to_columns) != len(from_columns):
        issues.append(
            Issue(
                kind="structure",
                path=path,
                table=hop.to,
                message=f"hop from {from_table}({', '.join(from_columns)}) needs "
                f"`to_columns` on '{hop.to}' (its key has {len(to_columns)} "
                "column(s))",
            )
        )
        return None
    ok = _check_columns(schema.tables.get(from_table), from_columns, f"{path}.from", issues)
    ok = _check_columns(target, to_columns, f"{path}.to_columns", issues) and ok
    if not ok:
        return None
    kind, fk_name = _step_kind(schema, from_table, from_columns, hop.to, to_columns)
    if kind == "logical" and not hop.logical:
        unbacked = _unbacked_hop(schema, from_table, from_columns, hop.to, to_columns, path)
        if unbacked is not None:
            issues.append(unbacked)
            return None
    return Step(from_table, from_columns, hop.to, to_columns, kind, fk_name, hop.cast)


def _unbacked_hop(
    schema: SchemaInfo,
    from_table: str,
    from_columns: tuple[str, ...],
    to_table: str,
    to_columns: tuple[str, ...],
    path: str,
) -> Issue | None:
    """A hop no foreign key backs, where one most likely should: the two tables have a foreign
    key the hop does not follow, or the hop joins a primary key to another table's key."""
    step = f"{from_table}({', '.join(from_columns)}) -> {to_table}({', '.join(to_columns)})"
    escape = "or mark the hop `logical: true` with a `reason` if the reference is intended"
    between = [fk for fk in schema.foreign_keys() if {fk.table, fk.referred_table} == {from_table, to_table}]
    if between:
        fk = between[0]
        return Issue(
            kind="link_ignores_foreign_key",
            path=f"{path}.from",
            table=from_table,
            column=from_columns[0],
            message=f"hop {step} follows no foreign key, but foreign key {fk.label} joins "
            f"'{from_table}' and '{to_table}': write the hop along it, {escape}",
        )
    source, target = schema.tables[from_table], schema.tables[to_table]
    if source.primary_key and set(from_columns) == set(source.primary_key) and target.is_unique(to_columns):
        return Issue(
            kind="unbacked_link",
            path=f"{path}.from",
            table=from_table,
            column=from_columns[0],
            message=f"hop {step} joins the primary key of '{from_table}' to the key of "
            f"'{to_table}' and no foreign key backs it: rows would match by coincidence of "
            f"numbering; write the hop from the column that references '{to_table}', {escape}",
        )
    return None


def _check_columns(table: TableInfo | None, columns: tuple[str, ...], path: str, issues: list[Issue]) -> bool:
    if table is None:
        return False
    ok = True
    for column in columns:
        if column not in table.columns:
            issues.append(
                Issue(
                    kind="unknown_column",
                    path=path,
                    table=table.name,
                    column=column,
                    message=f"column '{table.name}.{column}' does not exist",
                )
            )
            ok = False
    return ok


def _step_kind(
    schema: SchemaInfo,
    from_table: str,
    from_columns: tuple[str, ...],
    to_table: str,
    to_columns: tuple[str, ...],
) -> tuple[StepKind, str | None]:
    pairs = set(zip(from_columns, to_columns, strict=True))
    for fk in schema.tables[from_table].foreign_keys:
        if fk.referred_table == to_table and set(zip(fk.columns, fk.referred_columns, strict=True)) == pairs:
            return "foreign_key", fk.name
    reverse = {(b, a) for a, b in pairs}
    for fk in schema.tables[to_table].foreign_keys:
        if (
            fk.referred_table == from_table
            and set(zip(fk.columns, fk.referred_columns, strict=True)) == reverse
        ):
            return "reverse_foreign_key", fk.name
    return "logical", None


def _written_path(
    schema: SchemaInfo,
    manifest: Manifest,
    table: str,
    name: str,
    link: Link,
    where: str,
    issues: list[Issue],
) -> SubjectPath | None:
    steps: list[Step] = []
    current = table
    for index in range(len(link.path)):
        step = _resolve_step(schema, manifest, current, index, link, where, issues)
        if step is None:
            return None
        steps.append(step)
        current = step.to_table
    if current != manifest.subject.table:
        issues.append(
            Issue(
                kind="link_not_reaching_subject",
                path=f"{where}.path",
                table=table,
                message=f"link of table '{table}' ends at '{current}', not at the "
                f"subject table '{manifest.subject.table}'",
            )
        )
        return None
    return SubjectPath(table, name, tuple(steps), tuple(link.columns))


class LinkResolver:
    """Resolves every managed table's paths; derived links reuse the path of the managed table
    their foreign-key chain reaches first (``order_items -> orders`` + the path of ``orders``)."""

    def __init__(self, manifest: Manifest, schema: SchemaInfo, issues: list[Issue]) -> None:
        self.manifest = manifest
        self.schema = schema
        self.issues = issues
        self.managed = {t for t in manifest.managed_tables() if t in schema.tables}
        self.paths: dict[str, tuple[SubjectPath, ...]] = {}
        self.resolving: set[str] = set()

    def resolve(self, table: str) -> tuple[SubjectPath, ...]:
        if table in self.paths:
            return self.paths[table]
        self.resolving.add(table)
        spec = self.manifest.tables.get(table, TableSpec())
        where = f"tables.{table}"
        if table == self.manifest.subject.table:
            paths: tuple[SubjectPath, ...] = (SubjectPath(table, "subject", ()),)
        elif spec.links is not None:
            written = [
                _written_path(
                    self.schema,
                    self.manifest,
                    table,
                    name,
                    link,
                    f"{where}.links.{name}",
                    self.issues,
                )
                for name, link in spec.links.items()
            ]
            paths = tuple(p for p in written if p is not None)
        elif spec.link is not None:
            path = _written_path(
                self.schema,
                self.manifest,
                table,
                "default",
                spec.link,
                f"{where}.link",
                self.issues,
            )
            paths = () if path is None else (path,)
        else:
            path = self._derived(table)
            paths = () if path is None else (path,)
        self.resolving.discard(table)
        self.paths[table] = paths
        return paths

    def _derived(self, table: str) -> SubjectPath | None:
        """Follow the foreign keys to the nearest managed tables; exactly one full path must
        remain once chains that would loop back through ``table`` are dropped."""
        subject = self.manifest.subject.table
        chains = candidate_paths(self.schema, table, self.managed - {table})
        if not chains:
            self.issues.append(
                Issue(
                    kind="no_link",
                    path=f"tables.{table}.link",
                    table=table,
                    message=f"table '{table}' has no foreign-key path to the subject table "
                    f"'{subject}' or to another managed table; write its `link`",
                )
            )
            return None
        full: list[tuple[Step, ...]] = []
        unresolved: list[str] = []
        for chain in chains:
            steps = self._continue(table, chain)
            if steps is None:
                unresolved.append(chain[-1].to_table)
            elif steps:
                full.append(steps)
        if len(full) == 1 and not unresolved:
            return SubjectPath(table, "default", full[0], derived=True)
        if len(full) > 1 or (full and unresolved):
            listed = "; ".join(" / ".join(str(s) for s in c) for c in chains[:4])
            self._ambiguous(table, f"it has {len(chains)} foreign-key paths ({listed})")
        else:
            ends = ", ".join(f"'{t}'" for t in unresolved)
            self._ambiguous(table, f"its foreign keys lead to {ends}, whose own path is not a single link")
        return None

    def _continue(self, table: str, chain: tuple[Step, ...]) -> tuple[Step, ...] | None:
        """``chain`` extended by the path of the managed table it ends at.

        Returns ``()`` when that path loops back through ``table`` (the chain is discarded) and
        None when the end table has no single path.
        """
        end = chain[-1].to_table
        if end == self.manifest.subject.table:
            return chain
        if end in self.resolving:
            return ()
        continued = self.resolve(end)
        if len(continued) != 1:
            return None
        if table in continued[0].tables:
            return ()
        return chain + continued[0].steps

    def _ambiguous(self, table: str, why: str) -> None:
        self.issues.append(
            Issue(
                kind="ambiguous_link",
                path=f"tables.{table}.link",
                table=table,
                message=f"the link of table '{table}' cannot be derived: {why}; write its `link` "
                "to choose one",
            )
        )
