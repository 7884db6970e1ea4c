"""Encrypted artifact frames: round trip with bounded frames; tampering and truncation are detected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.engine.artifacts import FRAME_BYTES, MAGIC, ArtifactCorrupted, EncryptedWriter, read_frames
from app.engine.storage import FileStore

KEY = bytes(range(32))
CONTEXT = b"lethe-artifact:r1:json:"


def _write(path: Path, payload: bytes, chunk: int = 10_000) -> None:
    with EncryptedWriter(FileStore(path.parent).create(path.name), KEY, CONTEXT) as writer:
        for start in range(0, len(payload), chunk):
            writer.write(payload[start : start + chunk])


def test_round_trip_in_frames(tmp_path: Path) -> None:
    payload = os.urandom(FRAME_BYTES * 3 + 123)
    path = tmp_path / "a.enc"
    _write(path, payload)
    frames = list(read_frames(path.open("rb"), KEY, CONTEXT))
    assert b"".join(frames) == payload
    assert max(len(f) for f in frames) <= FRAME_BYTES
    assert payload[:64] not in path.read_bytes()


def test_empty_artifact_has_one_final_frame(tmp_path: Path) -> None:
    path = tmp_path / "e.enc"
    _write(path, b"")
    assert list(read_frames(path.open("rb"), KEY, CONTEXT)) == [b""]


def _frames_of(blob: bytes) -> list[bytes]:
    body, frames = blob[len(MAGIC) :], []
    while body:
        length = int.from_bytes(body[:4], "big")
        frames.append(body[: 4 + length])
        body = body[4 + length :]
    return frames


@pytest.mark.parametrize("damage", ["truncate", "reorder", "flip", "context"])
def test_tampering_is_detected(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "t.enc"
    _write(path, os.urandom(FRAME_BYTES * 3))
    frames = _frames_of(path.read_bytes())
    context = CONTEXT
    if damage == "truncate":
        frames = frames[:-1]
    elif damage == "reorder":
        frames[0], frames[1] = frames[1], frames[0]
    elif damage == "flip":
        frames[1] = frames[1][:-1] + bytes([frames[1][-1] ^ 1])
    else:
        context = b"lethe-artifact:r2:json:"
    path.write_bytes(MAGIC + b"".join(frames))
    with pytest.raises(ArtifactCorrupted):
        b"".join(read_frames(path.open("rb"), KEY, context))


def test_aborted_writer_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "x.enc"
    writer = EncryptedWriter(FileStore(tmp_path).create(path.name), KEY, CONTEXT)
    writer.write(b"partial")
    writer.__exit__(RuntimeError, RuntimeError(), None)
    assert list(tmp_path.iterdir()) == []
