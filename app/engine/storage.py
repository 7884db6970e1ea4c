"""Where encrypted export artifacts are kept: a local directory or an S3-compatible bucket.

Both backends offer the same small interface (:class:`ArtifactStore`): a sink that is written
frame by frame and becomes visible only when committed, a reader that fetches the artifact in
ranges, listing by request and deletion. Memory stays bounded whatever the artifact's size:

- ``filesystem`` (the embedded default) writes ``<name>.partial``, fsyncs it and renames it into
  place on commit; an aborted or killed writer leaves at most a ``.partial`` file, which is never
  read and is removed with the request's other files.
- ``s3`` (AWS S3, MinIO, Ceph RGW, any S3 API) uses :mod:`obstore`: a multipart upload of
  :data:`S3_PART_BYTES` parts with at most :data:`S3_PARTS_IN_FLIGHT` uploading at once, completed
  only on commit and aborted otherwise, so no reader ever sees a partial object (a killed process
  leaves an incomplete upload that the bucket's ``AbortIncompleteMultipartUpload`` rule removes).
  Credentials come from the access key settings, or else from the library's default chain (the
  standard ``AWS_*`` variables, a pod's web identity token, the instance metadata service).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store

from app.engine.errors import EngineError

if TYPE_CHECKING:
    from app.config import Settings

__all__ = (
    "ARTIFACT_FORMATS",
    "S3_PARTS_IN_FLIGHT",
    "S3_PART_BYTES",
    "STORAGE_ERRORS",
    "ArtifactMissing",
    "ArtifactReader",
    "ArtifactSink",
    "ArtifactStore",
    "FileStore",
    "S3ArtifactStore",
    "artifact_name",
    "artifact_store",
    "remove_request_artifacts",
)

S3_PART_BYTES = 8 * 1024 * 1024
"""Size of one multipart upload part (S3 requires at least 5 MiB for all but the last)."""
S3_PARTS_IN_FLIGHT = 2
"""Parts uploading at once: memory of one upload stays below ``(this + 1) * S3_PART_BYTES``."""
S3_READ_BYTES = 1024 * 1024
"""Range fetched per GET while an artifact is read."""
READINESS_PREFIX = "readiness-probe"
PARTIAL_SUFFIX = ".partial"
"""Appended on the filesystem to an artifact's name while it is written (renamed at commit)."""
"""What the readiness check lists in the bucket (under the prefix; nothing is stored there)."""


class ArtifactMissing(EngineError):
    """No committed artifact of that name (never written, aborted, purged or erased)."""


STORAGE_ERRORS = (OSError, BaseError)
"""What a store raises when it cannot be reached or refuses (disk full, bucket down, denied)."""


class ArtifactSink(Protocol):
    """Bytes of one artifact being written; visible to readers only after :meth:`commit`."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class ArtifactReader(Protocol):
    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


class ArtifactStore(Protocol):
    """The storage interface of export artifacts."""

    def create(self, name: str) -> ArtifactSink: ...

    def open(self, name: str) -> ArtifactReader:
        """Raises :class:`ArtifactMissing` when no committed artifact has that name."""
        ...

    def exists(self, name: str) -> bool: ...

    def request_names(self, request_id: str, attempts: int) -> list[str]:
        """Every stored name of one request, whose attempts are numbered up to ``attempts``
        (partial ones too on the filesystem)."""
        ...

    def delete(self, names: Iterable[str]) -> None: ...

    def check(self) -> str | None:
        """None when artifacts can be written, else what fails (no URL, key or credential)."""
        ...


ARTIFACT_FORMATS = ("json", "zip")


def artifact_name(request_id: str, attempt: int, fmt: str) -> str:
    """The name of the encrypted ``fmt`` (one of :data:`ARTIFACT_FORMATS`) artifact of one attempt."""
    return f"{request_id}.{attempt}.{fmt}.enc"


class _FileSink:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._partial = path.with_name(path.name + PARTIAL_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._partial.open("wb")
        self._done = False

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._done = True
        self._partial.replace(self._path)

    def abort(self) -> None:
        if not self._done:
            self._file.close()
            self._done = True
            self._partial.unlink(missing_ok=True)


class FileStore:
    """Artifacts as files of one directory (the embedded default)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def create(self, name: str) -> ArtifactSink:
        return _FileSink(self.directory / name)

    def open(self, name: str) -> ArtifactReader:
        try:
            return (self.directory / name).open("rb")
        except (FileNotFoundError, NotFoundError):
            raise ArtifactMissing(name) from None

    def exists(self, name: str) -> bool:
        return (self.directory / name).is_file()

    def request_names(self, request_id: str, attempts: int) -> list[str]:
        """The request's names that exist, looked up one by one: a listing (or a glob) of the
        directory costs as much as every export it holds, on each completed export."""
        candidates = (
            artifact_name(request_id, attempt, fmt) + suffix
            for attempt in range(attempts + 1)
            for fmt in ARTIFACT_FORMATS
            for suffix in ("", PARTIAL_SUFFIX)
        )
        return sorted(name for name in candidates if (self.directory / name).is_file())

    def delete(self, names: Iterable[str]) -> None:
        for name in names:
            (self.directory / name).unlink(missing_ok=True)

    def check(self) -> str | None:
        """Create the directory if needed, then write and remove a probe file in it."""
        probe = self.directory / f".readiness-{os.getpid()}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            return f"artifact directory is not writable ({type(error).__name__})"
        return None


class _S3Sink:
    def __init__(self, store: Any, name: str) -> None:
        self._writer = obstore.open_writer(
            store, name, buffer_size=S3_PART_BYTES, max_concurrency=S3_PARTS_IN_FLIGHT
        )
        self._done = False

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    def commit(self) -> None:
        self._done = True
        self._writer.close()

    def abort(self) -> None:
        if not self._done:
            self._done = True
            # leaving the writer's context with an exception aborts the multipart upload
            error = RuntimeError("artifact aborted")
            self._writer.__exit__(type(error), error, None)


class _S3Reader:
    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def read(self, size: int, /) -> bytes:
        """Up to ``size`` bytes, short only at the end (a read may stop at a buffer's edge)."""
        data = bytes(self._handle.read(size))
        while data and len(data) < size:
            more = bytes(self._handle.read(size - len(data)))
            if not more:
                break
            data += more
        return data

    def close(self) -> None:
        self._handle.close()


def _key(name: str) -> str:
    """Object key of an artifact name: one "directory" per request, so a request lists alone."""
    return name.replace(".", "/", 1)


def _name(key: str) -> str:
    return key.replace("/", ".", 1)


class S3ArtifactStore:
    """Artifacts as objects under a prefix of an S3-compatible bucket, through :mod:`obstore`."""

    def __init__(self, settings: Settings) -> None:
        config: dict[str, Any] = {}
        if settings.artifact_s3_region:
            config["region"] = settings.artifact_s3_region
        if settings.artifact_s3_endpoint_url:
            config["endpoint"] = settings.artifact_s3_endpoint_url
        if settings.artifact_s3_access_key_id and settings.artifact_s3_secret_access_key:
            config["access_key_id"] = settings.artifact_s3_access_key_id
            config["secret_access_key"] = settings.artifact_s3_secret_access_key
        endpoint = settings.artifact_s3_endpoint_url or ""
        self._store = S3Store(
            settings.artifact_s3_bucket,
            prefix=settings.artifact_s3_prefix.strip("/") or None,
            client_options={"allow_http": endpoint.startswith("http://")},
            **config,
        )

    def create(self, name: str) -> ArtifactSink:
        return _S3Sink(self._store, _key(name))

    def open(self, name: str) -> ArtifactReader:
        try:
            return _S3Reader(obstore.open_reader(self._store, _key(name), buffer_size=S3_READ_BYTES))
        except (FileNotFoundError, NotFoundError):
            raise ArtifactMissing(name) from None

    def exists(self, name: str) -> bool:
        try:
            obstore.head(self._store, _key(name))
        except (FileNotFoundError, NotFoundError):
            return False
        return True

    def request_names(self, request_id: str, attempts: int) -> list[str]:  # noqa: ARG002 - one listing
        listed = obstore.list(self._store, prefix=request_id).collect()
        return sorted(_name(str(meta["path"])) for meta in listed)

    def delete(self, names: Iterable[str]) -> None:
        batch = [_key(name) for name in names]
        if batch:
            obstore.delete(self._store, batch)

    def check(self) -> str | None:
        """One listing request under the prefix: the bucket exists and the credentials hold."""
        try:
            obstore.list_with_delimiter(self._store, prefix=READINESS_PREFIX)
        except (BaseError, OSError) as error:
            return f"S3 bucket unreachable ({type(error).__name__})"
        return None


@lru_cache(maxsize=8)
def artifact_store(settings: Settings) -> ArtifactStore:
    """The artifact store the settings select (one per settings, its connections reused)."""
    if settings.artifact_storage == "s3":
        return S3ArtifactStore(settings)
    return FileStore(Path(settings.artifacts_dir))


def remove_request_artifacts(store: ArtifactStore, request_id: str, attempts: int, keep: int | None) -> None:
    """Delete a request's artifacts (partial ones too) of attempts up to ``attempts``, except
    those of attempt ``keep``."""
    names = store.request_names(request_id, attempts)
    store.delete(name for name in names if keep is None or name.split(".")[1] != str(keep))
