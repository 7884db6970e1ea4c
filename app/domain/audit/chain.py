"""Audit chain verification and signed checkpoints, also witnessed in a sink outside the store."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.audit import AuditEvent
from app.domain.audit.links import GENESIS_HASH, LEGACY_EPOCH, canonical_time, chain_keyring, hash_of
from app.domain.audit.queries import head
from app.domain.audit.sequencer import pending_count
from app.lib.clock import utcnow
from app.lib.crypto import ChainKeyring, load_signing_key, public_key_pem
from app.lib.errors import Unavailable, ValidationFailed, field_error

__all__ = (
    "ChainReport",
    "Checkpoint",
    "append_to_sink",
    "make_checkpoint",
    "read_sink",
    "sign_checkpoint",
    "sink_checkpoints",
    "verify_chain",
    "verify_checkpoint_signature",
)

VERIFY_BATCH = 1000
CHECKPOINT_DOMAIN = b"lethe-audit-checkpoint-v1\n"
SIGNING_KEY_VARIABLE = "LETHE_AUDIT_SIGNING_KEY"


class Checkpoint(msgspec.Struct, kw_only=True, frozen=True):
    """A signed statement of the head, kept outside the database.

    A checkpoint written to the sink also witnesses ``links``: the hash of every event from
    ``links_from`` up to ``seq``, so verification names the first rewritten ``seq`` itself.
    """

    seq: int
    head_hash: str
    time: str
    signature: str
    algorithm: str = "Ed25519"
    public_key: str | None = None
    links_from: int | None = None
    links: tuple[str, ...] = ()


def _signed_message(checkpoint_seq: int, head_hash: str, time: str, links: Sequence[str] = ()) -> bytes:
    fields: dict[str, object] = {"head_hash": head_hash, "seq": checkpoint_seq, "time": time}
    if links:
        fields["links_sha256"] = hashlib.sha256("".join(links).encode("ascii")).hexdigest()
    return CHECKPOINT_DOMAIN + msgspec.json.encode(fields, order="sorted")


def _signing_key(settings: Settings) -> Ed25519PrivateKey:
    if not settings.audit_signing_key:
        raise Unavailable(
            f"signed audit checkpoints need {SIGNING_KEY_VARIABLE} (or "
            f"{SIGNING_KEY_VARIABLE}_FILE); it is not configured"
        )
    return load_signing_key(settings.audit_signing_key)


def sign_checkpoint(
    settings: Settings,
    checkpoint_seq: int,
    head_hash: str,
    links_from: int | None = None,
    links: Sequence[str] = (),
) -> Checkpoint:
    """Sign (seq, head hash, time, and the witnessed links if any) with the audit signing key."""
    key = _signing_key(settings)
    time = canonical_time(utcnow())
    signature = key.sign(_signed_message(checkpoint_seq, head_hash, time, links))
    return Checkpoint(
        seq=checkpoint_seq,
        head_hash=head_hash,
        time=time,
        signature=base64.b64encode(signature).decode("ascii"),
        public_key=public_key_pem(key),
        links_from=links_from,
        links=tuple(links),
    )


async def make_checkpoint(session: AsyncSession, settings: Settings) -> Checkpoint:
    """A signed checkpoint of the current head (computed on demand, not stored)."""
    seq, head_hash = await head(session)
    return sign_checkpoint(settings, seq, head_hash)


def verify_checkpoint_signature(settings: Settings, checkpoint: Checkpoint) -> None:
    """Refuse (422) a checkpoint whose signature the configured key did not make."""
    public = _signing_key(settings).public_key()
    message = _signed_message(checkpoint.seq, checkpoint.head_hash, checkpoint.time, checkpoint.links)
    try:
        public.verify(base64.b64decode(checkpoint.signature, validate=True), message)
    except (InvalidSignature, ValueError) as exc:
        raise ValidationFailed(
            "the checkpoint's signature does not verify with the audit signing key",
            [field_error("checkpoint.signature", "invalid")],
        ) from exc


@dataclass(frozen=True, kw_only=True)
class ChainReport:
    """Outcome of :func:`verify_chain`: ok, or the first broken ``seq`` and why."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    reason: str | None = None
    """``hash_mismatch``, ``gap``, ``broken_link``, ``epoch``, ``truncated`` or ``rewritten``."""
    detail: str | None = None
    pending: int = 0
    """Events committed and not linked yet when the walk ended (verification covers linked ones)."""


def _witnessed(checkpoints: Iterable[Checkpoint]) -> dict[int, str]:
    """seq -> hash as the checkpoints saw it (heads and witnessed links)."""
    seen: dict[int, str] = {}
    for checkpoint in checkpoints:
        if checkpoint.seq > 0:
            seen[checkpoint.seq] = checkpoint.head_hash
        if checkpoint.links_from is not None:
            for offset, link in enumerate(checkpoint.links):
                seen[checkpoint.links_from + offset] = link
    return seen


@dataclass
class _Walk:
    keyring: ChainKeyring
    witnessed: dict[int, str]
    expected: int = 1
    prev_hash: str = GENESIS_HASH
    epoch: int = LEGACY_EPOCH

    def check(self, event: AuditEvent) -> tuple[str, str] | None:  # noqa: PLR0911 - one return per reason
        if event.seq != self.expected:
            return "gap", f"expected seq {self.expected}, found {event.seq}"
        if event.prev_hash != self.prev_hash:
            return "broken_link", "prev_hash does not equal the hash of the previous event"
        if event.epoch == LEGACY_EPOCH and self.epoch != LEGACY_EPOCH:
            return "epoch", f"an unkeyed event after epoch {self.epoch}: written without the chain key"
        link = hash_of(event, self.keyring)
        if link is None:
            return "epoch", f"no chain key of epoch {event.epoch} is configured"
        if link != event.hash:
            return "hash_mismatch", "the stored hash does not match the event's contents"
        witnessed = self.witnessed.get(event.seq)
        if witnessed is not None and witnessed != event.hash:
            return "rewritten", f"the hash at seq {event.seq} differs from the one a checkpoint witnessed"
        return None

    def advance(self, event: AuditEvent) -> None:
        self.expected, self.prev_hash, self.epoch = event.seq + 1, event.hash, event.epoch


async def verify_chain(session: AsyncSession, checkpoints: Sequence[Checkpoint] = ()) -> ChainReport:
    """Recompute the chain from seq 1 in batches and stop at the first broken event.

    Every keyed link is an HMAC under its epoch's chain key, so an event inserted without the
    key fails at its own ``seq``. Checkpoints (signature-checked by the caller) add what the
    database alone cannot show: a tail removed after them (``truncated``) and a consistent
    rebuild (``rewritten``, at the first seq whose hash differs from a witnessed one).
    """
    walk = _Walk(keyring=await chain_keyring(session), witnessed=_witnessed(checkpoints))
    pending = await pending_count(await session.connection())
    checked = 0
    while True:
        batch = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq >= walk.expected)
                .order_by(AuditEvent.seq)
                .limit(VERIFY_BATCH)
            )
        ).all()
        for event in batch:
            problem = walk.check(event)
            if problem is not None:
                return ChainReport(
                    ok=False,
                    checked=checked,
                    head_seq=walk.expected - 1,
                    head_hash=walk.prev_hash,
                    broken_seq=walk.expected if problem[0] == "gap" else event.seq,
                    reason=problem[0],
                    detail=problem[1],
                    pending=pending,
                )
            walk.advance(event)
            checked += 1
        if len(batch) < VERIFY_BATCH:
            break
    head_seq = walk.expected - 1
    covered = max((c.seq for c in checkpoints), default=0)
    if covered > head_seq:
        return ChainReport(
            ok=False,
            checked=checked,
            head_seq=head_seq,
            head_hash=walk.prev_hash,
            broken_seq=head_seq + 1,
            reason="truncated",
            detail=f"a checkpoint covers seq {covered} but the chain ends at {head_seq}",
            pending=pending,
        )
    return ChainReport(ok=True, checked=checked, head_seq=head_seq, head_hash=walk.prev_hash, pending=pending)


# --- the checkpoint sink: a file outside the store -------------------------------------------


def read_sink(path: Path) -> list[Checkpoint]:
    """Every checkpoint of the sink file (JSON lines), oldest first; none when it does not exist.

    Raises:
        ValidationFailed: a line is not a checkpoint.
    """
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    try:
        return [msgspec.json.decode(line, type=Checkpoint) for line in lines if line.strip()]
    except msgspec.DecodeError as exc:
        raise ValidationFailed(
            "the checkpoint sink holds a line that is not a checkpoint",
            [field_error("audit_checkpoint_path", "malformed line")],
        ) from exc


def sink_checkpoints(settings: Settings) -> list[Checkpoint]:
    """The sink's checkpoints, each signature-checked (none when no sink is configured)."""
    if not settings.audit_checkpoint_path:
        return []
    checkpoints = read_sink(Path(settings.audit_checkpoint_path))
    for checkpoint in checkpoints:
        verify_checkpoint_signature(settings, checkpoint)
    return checkpoints


async def append_to_sink(session: AsyncSession, settings: Settings) -> Checkpoint | None:
    """Witness the events since the sink's last checkpoint and append a signed checkpoint.

    Nothing is written when the chain has not grown. The line is appended and fsynced, so a
    checkpoint never disappears because the process died right after writing it.
    """
    assert settings.audit_checkpoint_path is not None  # noqa: S101 - callers check
    path = Path(settings.audit_checkpoint_path)
    previous = read_sink(path)
    last = previous[-1].seq if previous else 0
    rows = (
        await session.execute(
            select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.seq > last).order_by(AuditEvent.seq)
        )
    ).all()
    if not rows:
        return None
    first = int(rows[0][0])
    contiguous = [str(r[1]) for i, r in enumerate(rows) if int(r[0]) == first + i]
    checkpoint = sign_checkpoint(settings, int(rows[-1][0]), str(rows[-1][1]), first, contiguous)
    _append_line(path, msgspec.json.encode(checkpoint) + b"\n")
    return checkpoint


def _append_line(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as sink:
        sink.write(line)
        sink.flush()
        os.fsync(sink.fileno())
