"""Export artifacts encrypted at rest in AES-GCM frames, written and read with bounded memory.

File layout: the magic ``LETHEAF1``, then frames of ``length (4 bytes, big endian) || nonce ||
ciphertext || tag``, each holding up to :data:`FRAME_BYTES` of plaintext. Every frame's associated
data is the artifact's context (request id and format), its index and whether it is the final
frame, so a reordered, dropped, swapped-between-files or truncated frame fails authentication.
Where the bytes go is the artifact store's business (:mod:`app.engine.storage`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Generator
from types import TracebackType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.engine.errors import EngineError
from app.engine.storage import ArtifactReader, ArtifactSink

__all__ = ("FRAME_BYTES", "MAGIC", "ArtifactCorrupted", "EncryptedWriter", "read_frames")

MAGIC = b"LETHEAF1"
FRAME_BYTES = 64 * 1024
NONCE_BYTES = 12
_LENGTH = struct.Struct(">I")
_FRAME_AD = struct.Struct(">QB")


class ArtifactCorrupted(EngineError):
    """The artifact was altered, truncated or encrypted under another key or context."""


def _associated_data(context: bytes, index: int, *, final: bool) -> bytes:
    return context + _FRAME_AD.pack(index, 1 if final else 0)


class EncryptedWriter:
    """A write-only binary file that encrypts in frames into a store's sink; the artifact appears
    only on :meth:`close` (the sink's commit).

    Usable as the ``fileobj`` of :class:`zipfile.ZipFile` (it is not seekable, so zip entries get
    data descriptors). Memory use is one frame (plus the sink's buffer), whatever the artifact's size.
    """

    def __init__(self, sink: ArtifactSink, key: bytes, context: bytes) -> None:
        self._file = sink
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
        self._file.write(_LENGTH.pack(len(sealed) + NONCE_BYTES) + nonce + sealed)
        self._index += 1

    def close(self) -> None:
        """Write the final frame and commit the artifact (atomically: all of it or nothing)."""
        if self._closed:
            return
        while len(self._buffer) > FRAME_BYTES:
            self._emit(bytes(self._buffer[:FRAME_BYTES]), final=False)
            del self._buffer[:FRAME_BYTES]
        self._emit(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._closed = True
        self._file.commit()

    def abort(self) -> None:
        """Discard what was written (the run failed or lost its lease)."""
        if not self._closed:
            self._closed = True
            self._file.abort()

    def __enter__(self) -> EncryptedWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _read_exact(handle: ArtifactReader, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise ArtifactCorrupted("artifact is truncated")
    return data


def read_frames(handle: ArtifactReader, key: bytes, context: bytes) -> Generator[bytes, None, None]:
    """Yield the plaintext frame by frame, authenticating order, completeness and context; the
    reader is closed at the end.

    Raises:
        ArtifactCorrupted: on any tampering, truncation or wrong key.
    """
    aead = AESGCM(key)
    try:
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
    finally:
        handle.close()
