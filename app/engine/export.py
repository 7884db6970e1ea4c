"""Access export (Art. 15/20): every row of the subject as one JSON document and a ZIP of CSVs.

Rows are streamed from each target (server-side cursors, ``yield_per``) straight into two
encrypted artifacts (see :mod:`app.engine.artifacts`), so memory stays bounded by one batch and
one encryption frame whatever the subject's footprint. Both documents are deterministic for a given
database state and request: a resumed run writes the same content as an uninterrupted one.
"""

from __future__ import annotations

import asyncio
import csv
import io
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
from sqlalchemy import Table, select
from sqlalchemy import types as sqltypes
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.artifacts import EncryptedWriter
from app.engine.dialects import dialect_of
from app.engine.runs import (
    ExternalSection,
    RequestFailed,
    RequestOutcome,
    RequestRun,
    SystemOutcome,
    SystemRun,
)
from app.engine.storage import artifact_name, artifact_store
from app.engine.subjects import (
    ReflectedTarget,
    reflect_target,
    resolve_subject,
    subject_condition,
    subject_key_reference,
)
from app.lib.crypto import aes_key
from app.manifest.model import Manifest, TableSpec, recipient_names

__all__ = (
    "EXPORT_FORMAT",
    "WITHHELD_BASIS",
    "artifact_context",
    "run_access",
    "table_metadata",
    "withheld_columns",
)

EXPORT_FORMAT = "lethe-access-export/1"


def artifact_context(request_id: str, fmt: str) -> bytes:
    """Associated data binding an artifact to its request and format."""
    return f"lethe-artifact:{request_id}:{fmt}:".encode()


def _enc_hook(value: Any) -> Any:
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return str(value)


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook, decimal_format="string")


def _jsonable(value: Any) -> Any:
    return msgspec.to_builtins(value, enc_hook=_enc_hook)


WITHHELD_BASIS = "Art. 15(4) GDPR: disclosure would adversely affect the security of others"
"""Why ``export: false`` columns are left out, as the export's metadata states it."""


def withheld_columns(manifest: Manifest, table: str) -> dict[str, str]:
    """Columns of ``table`` the manifest withholds from exports, with each one's reason."""
    spec = manifest.tables.get(table, TableSpec())
    return {
        name: column.export_reason or "" for name, column in sorted(spec.columns.items()) if not column.export
    }


def table_metadata(manifest: Manifest, table: str, links: Sequence[str]) -> dict[str, Any]:
    """The Art. 15(1) facts about one table: purposes, legal basis, categories, retention, recipients.

    ``withheld`` lists the columns left out of the export for security (Art. 15(4)) with the
    manifest's reason for each; their values appear in neither the JSON nor the CSV.
    """
    spec = manifest.tables.get(table, TableSpec())
    columns = {
        name: {
            "category": column.category,
            "rectifiable": column.rectifiable,
            "retention": _jsonable(column.retention) if column.retention else None,
            "exported": column.export,
        }
        for name, column in sorted(spec.columns.items())
    }
    withheld = [
        {"column": name, "reason": reason, "basis": WITHHELD_BASIS}
        for name, reason in withheld_columns(manifest, table).items()
    ]
    return {
        "purpose": spec.purpose,
        "legal_basis": spec.legal_basis,
        "categories": sorted({column.category for column in spec.columns.values()}),
        "recipients": recipient_names(spec.recipients),
        "retention": _jsonable(spec.retention) if spec.retention else None,
        "columns": columns,
        "links": sorted(links),
        "withheld": withheld,
    }


class _Artifacts:
    """The two outputs of one run: the JSON document and the ZIP archive, written side by side."""

    def __init__(self, run: RequestRun) -> None:
        settings = run.settings
        if not settings.artifact_key:
            raise RequestFailed("LETHE_ARTIFACT_KEY is not configured: exports cannot be stored")
        key = aes_key(settings.artifact_key)
        store = artifact_store(settings)
        request_id = str(run.request_id)
        self.json = EncryptedWriter(
            store.create(artifact_name(request_id, run.attempt, "json")),
            key,
            artifact_context(request_id, "json"),
        )
        try:
            zip_sink = store.create(artifact_name(request_id, run.attempt, "zip"))
        except BaseException:
            self.json.abort()
            raise
        self.zip_file = EncryptedWriter(zip_sink, key, artifact_context(request_id, "zip"))
        self.archive = zipfile.ZipFile(self.zip_file, "w", compression=zipfile.ZIP_DEFLATED)
        started = run.started_at
        self.date_time = (
            started.year,
            started.month,
            started.day,
            started.hour,
            started.minute,
            started.second,
        )

    def entry(self, name: str) -> Any:
        info = zipfile.ZipInfo(name, date_time=self.date_time)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o600 << 16
        return self.archive.open(info, "w", force_zip64=True)

    def write_entry(self, name: str, content: bytes) -> None:
        with self.entry(name) as handle:
            handle.write(content)

    def close(self) -> None:
        self.archive.close()
        self.json.close()
        self.zip_file.close()

    def abort(self) -> None:
        self.json.abort()
        self.zip_file.abort()


class _CsvEntry:
    """One CSV file inside the archive, written batch by batch."""

    def __init__(self, artifacts: _Artifacts, name: str, header: Sequence[str]) -> None:
        self._handle = artifacts.entry(name)
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")
        self.write_rows([list(header)])

    def write_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        self._writer.writerows(rows)
        self._handle.write(self._buffer.getvalue().encode("utf-8"))
        self._buffer.seek(0)
        self._buffer.truncate()

    def close(self) -> None:
        self._handle.close()


def _row_struct(names: Sequence[str]) -> type[msgspec.Struct]:
    """A struct type encoding a row as a JSON object keyed by column name (fast, no per-row dict)."""
    fields = [(f"c{i}", Any) for i in range(len(names))]
    return msgspec.defstruct("ExportRow", fields, rename={f"c{i}": str(name) for i, name in enumerate(names)})


def _csv_rows(partition: Sequence[Any], boolean_columns: Sequence[int]) -> list[list[Any]]:
    """Rows as CSV cells: dates ISO 8601, bytes base64, booleans ``true``/``false``, NULL empty.

    The conversion runs in msgspec (C) for a whole batch; only boolean columns get a Python pass.
    """
    rows: list[list[Any]] = msgspec.to_builtins([list(row) for row in partition], enc_hook=_enc_hook)
    for row in rows:
        for index in boolean_columns:
            value = row[index]
            if value is not None:
                row[index] = "true" if value else "false"
    return rows


async def _export_table(
    connection: AsyncConnection,
    run: RequestRun,
    system: str,
    table: Table,
    condition: Any,
    artifacts: _Artifacts,
    name: str,
    withheld: Iterable[str] = (),
) -> int:
    """Stream the subject's rows of one table into both artifacts; return how many there were.

    ``name`` is the manifest's (``billing.invoices``): the CSV entry is named after it, so tables
    of the same name in two schemas stay two files. Columns in ``withheld`` are never selected:
    their values do not leave the target.
    """
    skipped = set(withheld)
    exported = [c for c in table.columns if c.name not in skipped]
    names = [c.name for c in exported]
    order = list(table.primary_key.columns) or list(table.columns)
    statement = select(*exported).where(condition).order_by(*order)
    batch_rows = run.settings.export_batch_rows
    delay = run.settings.export_batch_delay_seconds
    row_type = _row_struct(names)
    booleans = [i for i, c in enumerate(exported) if isinstance(c.type, sqltypes.Boolean)]
    csv_entry = _CsvEntry(artifacts, f"{system}/{name}.csv", names)
    count = 0
    artifacts.json.write(b'"rows":[')
    result = await connection.stream(statement.execution_options(yield_per=batch_rows))
    async for partition in result.partitions(batch_rows):
        encoded = _ENCODER.encode([row_type(*row) for row in partition])
        if count:
            artifacts.json.write(b",")
        artifacts.json.write(encoded[1:-1])
        csv_entry.write_rows(_csv_rows(partition, booleans))
        count += len(partition)
        if delay:
            await asyncio.sleep(delay)
    csv_entry.close()
    artifacts.json.write(b'],"row_count":' + str(count).encode() + b"}")
    return count


def _table_order(target: ReflectedTarget) -> list[str]:
    """The subject table first, then the others by name: the same order whatever store kept the
    manifest (PostgreSQL JSONB does not keep key order), so artifacts are reproducible."""
    subject = target.graph.subject_table
    return [subject, *sorted(t for t in target.graph.managed_tables if t != subject)]


async def _begin_snapshot(connection: AsyncConnection) -> AsyncConnection:
    """A consistent snapshot across the tables of one system where the database offers one."""
    isolation = dialect_of(connection).snapshot_isolation
    if isolation is not None:
        connection = await connection.execution_options(isolation_level=isolation)
    await connection.begin()
    return connection


async def _export_system(run: RequestRun, system_run: SystemRun, artifacts: _Artifacts) -> SystemOutcome:
    manifest = system_run.manifest
    engine = await run.targets(system_run.system, manifest)
    header = {"manifest_version": system_run.manifest_version}
    async with engine.connect() as raw:
        connection = await _begin_snapshot(raw)
        reflection = await run.reflection(connection, system_run, only=manifest.managed_tables())
        target: ReflectedTarget = await reflect_target(connection, manifest, reflection)
        subject_table = target.tables[manifest.subject.table]
        key = await resolve_subject(connection, manifest, subject_table, run.identities, run.tenant)
        found = key is not None
        artifacts.json.write(_ENCODER.encode(system_run.system) + b":" + _ENCODER.encode(header)[:-1])
        artifacts.json.write(b',"found":' + (b"true" if found else b"false") + b',"tables":{')
        counts: dict[str, int] = {}
        metadata: dict[str, Any] = {}
        if key is not None:
            for index, name in enumerate(_table_order(target)):
                links = [p.describe() for p in target.graph.paths_for(name)]
                metadata[name] = table_metadata(manifest, name, links)
                prefix = b"," if index else b""
                artifacts.json.write(
                    prefix + _ENCODER.encode(name) + b':{"metadata":' + _ENCODER.encode(metadata[name]) + b","
                )
                condition = subject_condition(target, name, key)
                counts[name] = await _export_table(
                    connection,
                    run,
                    system_run.system,
                    target.tables[name],
                    condition,
                    artifacts,
                    name,
                    withheld_columns(manifest, name),
                )
        artifacts.json.write(b"}}")
        await connection.rollback()
    artifacts.write_entry(
        f"{system_run.system}/metadata.json",
        _ENCODER.encode({**header, "found": found, "tables": metadata, "row_counts": counts}),
    )
    secret = run.settings.audit_key
    reference = subject_key_reference(secret, system_run.system, key) if key and secret else None
    return SystemOutcome(not_found=not found, counts=counts, subject_key_ref=reference)


def _external_system(section: ExternalSection, artifacts: _Artifacts) -> None:
    """An external system's section: its manifest's facts, its counts and the part it reported
    (``data``, null without one); in the archive ``<system>/metadata.json`` and, with a part,
    ``<system>/data.json``."""
    header = {
        "manifest_version": section.manifest_version,
        **section.metadata,
        "counts": dict(section.counts),
    }
    artifacts.json.write(
        _ENCODER.encode(section.system) + b":" + _ENCODER.encode({**header, "data": section.data})
    )
    artifacts.write_entry(f"{section.system}/metadata.json", _ENCODER.encode(header))
    if section.data is not None:
        artifacts.write_entry(f"{section.system}/data.json", _ENCODER.encode(section.data))


def _consent_rows(history: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    header = ["occurred_at", "purpose", "granted", "policy_version", "text_hash", "source", "recorded_at"]
    return header, _csv_rows([[event.get(k) for k in header] for event in history], [2])


async def run_access(run: RequestRun) -> RequestOutcome:
    """Export the subject from every selected system into encrypted JSON and ZIP artifacts,
    with the sections the external systems reported (``run.external``) after the databases'.

    A resumed attempt exports again from the start into files of its own attempt number; only the
    attempt that completes (fenced) is recorded, so the artifacts equal an uninterrupted run's.
    """
    artifacts = _Artifacts(run)
    try:
        document_head = {
            "format": EXPORT_FORMAT,
            "request_id": str(run.request_id),
            "generated_at": run.started_at.isoformat(),
            "subject": {"identity_types": sorted(run.identities)},
            "consent_history": [_jsonable(event) for event in run.consent_history],
        }
        artifacts.json.write(_ENCODER.encode(document_head)[:-1] + b',"systems":{')
        outcomes: dict[str, SystemOutcome] = {}
        for index, system_run in enumerate(run.systems):
            if index:
                artifacts.json.write(b",")
            outcome = await _export_system(run, system_run, artifacts)
            outcomes[system_run.system] = outcome
            await run.progress.complete_system(system_run.system, outcome, action=None)
        for index, section in enumerate(run.external, start=len(run.systems)):
            if index:
                artifacts.json.write(b",")
            _external_system(section, artifacts)
        artifacts.json.write(b"}}")
        header, rows = _consent_rows(run.consent_history)
        consent = _CsvEntry(artifacts, "consent_history.csv", header)
        consent.write_rows(rows)
        consent.close()
        artifacts.write_entry("request.json", _ENCODER.encode(document_head))
        await asyncio.to_thread(artifacts.close)
    except BaseException:
        artifacts.abort()
        raise
    audit: dict[str, Any] = {
        "systems": {
            name: {"not_found": outcome.not_found, "rows": sum(outcome.counts.values())}
            for name, outcome in outcomes.items()
        }
    }
    if run.external:
        audit["external"] = {section.system: {"part": section.data is not None} for section in run.external}
    return RequestOutcome(audit=audit, artifact=True)
