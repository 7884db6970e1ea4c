"""Reflections of target schemas kept per process, checked against the live catalog on every use.

Reflecting a target (``MetaData.reflect`` of its schemas) costs tens of milliseconds even for a few
tables, while one request touches a subject's handful of rows. A worker therefore keeps the
reflection of each (system, manifest version, schemas, tables) and, before using it, runs ONE
catalog query (:meth:`app.engine.dialects.Dialect.schema_fingerprint`: a digest of columns, types,
keys, foreign keys, CHECKs and unique indexes). A different digest (a column added, a foreign key
referencing the subject table created, a table dropped and recreated) means the target changed:
the schemas are reflected again. The digest is read before reflecting, so DDL racing a reflection
leaves an entry whose digest no longer matches: it is reflected again next time, never trusted.

Registering a manifest forgets the system's entries (:meth:`ReflectionCache.forget`); a new
manifest version is a new key anyway.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.dialects import dialect_of
from app.engine.schema_info import Reflection, reflect

__all__ = ("REFLECTIONS", "ReflectionCache")

REFLECTIONS = Counter(
    "lethe_target_reflections",
    "Target reflections asked for by workers: reused (catalog unchanged) or reflected.",
    ["outcome"],
)

_Key = tuple[str, int, tuple[str, ...], frozenset[str] | None]


@dataclass(frozen=True)
class _Entry:
    fingerprint: str
    reflection: Reflection


class ReflectionCache:
    """The reflections of one process, least recently used dropped beyond ``size`` entries."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()

    async def reflection(
        self,
        connection: AsyncConnection,
        system: str,
        version: int,
        schemas: Sequence[str] = (),
        *,
        only: Collection[str] | None = None,
    ) -> Reflection:
        """The target's reflection (see :func:`app.engine.schema_info.reflect`), reused while the
        catalog's fingerprint is the one it was taken under.

        Raises:
            ManifestInvalid: a named schema does not exist (or the target is SQLite).
        """
        key: _Key = (system, version, tuple(schemas), None if only is None else frozenset(only))
        fingerprint = await dialect_of(connection).schema_fingerprint(connection, schemas)
        entry = self._entries.get(key)
        if entry is not None and entry.fingerprint == fingerprint:
            self._entries.move_to_end(key)
            REFLECTIONS.labels(outcome="reused").inc()
            return entry.reflection
        reflection = await reflect(connection, schemas, only=only)
        REFLECTIONS.labels(outcome="reflected").inc()
        self._entries[key] = _Entry(fingerprint, reflection)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return reflection

    def __len__(self) -> int:
        return len(self._entries)

    def forget(self, system: str | None = None) -> None:
        """Drop the entries of ``system`` (every entry without one): its manifest was registered."""
        for key in [k for k in self._entries if system is None or k[0] == system]:
            del self._entries[key]
