"""Export artifacts encrypted at rest in AES-GCM frames, written and read with bounded memory.

File layout: the magic ``LETHEAF1``, then frames of ``length (4 bytes, big endian) || nonce ||
ciphertext || tag``, each holding up to :data:`FRAME_BYTES` of plaintext. Every frame's associated
data is the artifact's context (request id and format), its index and whether it is the final
frame, so a reordered, dropped, swapped-between-files or truncated frame fails authentication.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.engine.errors import EngineError

__all__ = ("FRAME_BYTES", "MAGIC", "ArtifactCorrupted", "EncryptedWriter", "artifact_path", "read_frames")

MAGIC = b"LETHEAF1"
FRAME_BYTES = 64 * 1024
NONCE_BYTES = 12
_LENGTH = struct.Struct(">I")
_FRAME_AD = struct.Struct(">QB")


class ArtifactCorrupted(EngineError):
    """The artifact was altered, truncated or encrypted under another key or context."""


def artifact_path(directory: Path, request_id: str, attempt: int, fmt: str) -> Path:
    """Where the encrypted ``fmt`` (``json`` or ``zip``) artifact of one attempt lives."""
    return directory / f"{request_id}.{attempt}.{fmt}.enc"


def _associated_data(context: bytes, index: int, *, final: bool) -> bytes:
    return context + _FRAME_AD.pack(index, 1 if final else 0)


class EncryptedWriter:
    """A write-only binary file that encrypts in frames; the file appears only on :meth:`close`.

    Usable as the ``fileobj`` of :class:`zipfile.ZipFile` (it is not seekable, so zip entries get
    data descriptors). Memory use is one frame, whatever the size of the artifact.
    """

    def __init__(self, path: Path, key: bytes, context: bytes) -> None:
        self._path = path
        self._partial = path.with_name(path.name + ".partial")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._partial.open("wb")
        self._file.write(MAGIC)
        self._aead = AESGCM(key)
        self._context = context
        self._buffer = bytearray()
        self._index = 0
        self._closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Buffer plaintext; every full frame is encrypted and written at once."""
        self._buffer += data
        while len(self._buffer) >= FRAME_BYTES * 2:
            self._emit(bytes(self._buffer[:FRAME_BYTES]), final=False)
            del self._buffer[:FRAME_BYTES]
        return len(data)

    def flush(self) -> None:
        """Nothing to do: frames are written as they fill (zipfile calls this)."""

    def _emit(self, plaintext: bytes, *, final: bool) -> None:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(
            nonce, plaintext, _associated_data(self._context, self._index, final=final)
        )
        self._file.write(_LENGTH.pack(len(sealed) + NONCE_BYTES))
        self._file.write(nonce)
        self._file.write(sealed)
        self._index += 1

    def close(self) -> None:
        """Write the final frame and move the file into place atomically."""
        if self._closed:
            return
        while len(self._buffer) > FRAME_BYTES:
            self._emit(bytes(self._buffer[:FRAME_BYTES]), final=False)
            del self._buffer[:FRAME_BYTES]
        self._emit(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._closed = True
        self._partial.replace(self._path)

    def abort(self) -> None:
        """Discard what was written (the run failed or lost its lease)."""
        if not self._closed:
            self._file.close()
            self._closed = True
            self._partial.unlink(missing_ok=True)

    def __enter__(self) -> EncryptedWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _read_exact(handle: object, size: int) -> bytes:
    data: bytes = handle.read(size)  # type: ignore[attr-defined]
    if len(data) != size:
        raise ArtifactCorrupted("artifact is truncated")
    return data


def read_frames(path: Path, key: bytes, context: bytes) -> Iterator[bytes]:
    """Yield the plaintext frame by frame, authenticating order, completeness and context.

    Raises:
        ArtifactCorrupted: on any tampering, truncation or wrong key.
    """
    aead = AESGCM(key)
    with path.open("rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            raise ArtifactCorrupted("not a Lethe artifact")
        header = handle.read(_LENGTH.size)
        if not header:
            raise ArtifactCorrupted("artifact is truncated")
        index = 0
        while header:
            if len(header) != _LENGTH.size:
                raise ArtifactCorrupted("artifact is truncated")
            (length,) = _LENGTH.unpack(header)
            if length < NONCE_BYTES + 16 or length > FRAME_BYTES + NONCE_BYTES + 16:
                raise ArtifactCorrupted("artifact frame has an impossible length")
            blob = _read_exact(handle, length)
            header = handle.read(_LENGTH.size)
            final = not header
            try:
                yield aead.decrypt(
                    blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated_data(context, index, final=final)
                )
            except InvalidTag as exc:
                raise ArtifactCorrupted("artifact failed authentication") from exc
            index += 1
