"""Keys and primitives: pseudonymous references, AES-GCM artifacts, Ed25519 checkpoints."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.lib.errors import ConfigurationError

__all__ = (
    "CHAIN_OPTION",
    "ChainKeyring",
    "aes_key",
    "decrypt",
    "encrypt",
    "generate_signing_key_pem",
    "hmac_ref",
    "load_signing_key",
    "public_key_pem",
)

NONCE_BYTES = 12
CHAIN_OPTION = "lethe_audit_chain"
"""Execution option of the store engine that carries the :class:`ChainKeyring`."""


@dataclass(frozen=True)
class ChainKeyring:
    """The audit chain keys: the current epoch's key links new events; older epochs verify.

    The keys live in the process (``LETHE_AUDIT_CHAIN_KEY``), never in the database, so a role
    that may INSERT into the audit table cannot write an event that verifies.
    """

    epoch: int
    keys: Mapping[int, bytes] = field(repr=False)

    def link(self, epoch: int, message: bytes) -> str | None:
        """HMAC-SHA256 of ``message`` under the key of ``epoch`` (None when that key is unknown)."""
        key = self.keys.get(epoch)
        if key is None:
            return None
        return hmac.new(key, message, hashlib.sha256).hexdigest()


def hmac_ref(key: str, *parts: str) -> str:
    """HMAC-SHA256 of the parts (joined by NUL) under ``key``, hex encoded.

    Used for every pseudonymous reference: the same input always maps to the same reference and
    nobody without the key can reverse it or test a guess.
    """
    message = "\x00".join(parts).encode("utf-8")
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


ARTIFACT_KEY_BYTES = 32


def aes_key(value: str) -> bytes:
    """The AES-256 key of export artifacts: base64 (standard or URL-safe, padding optional) of 32 bytes.

    Raises:
        ConfigurationError: not base64, or not 32 bytes once decoded (the value is never echoed).
    """
    text = value.strip()
    padded = (text + "=" * (-len(text) % 4)).replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(
            "LETHE_ARTIFACT_KEY is not base64 (make one with `openssl rand -base64 32`)"
        ) from None
    if len(raw) != ARTIFACT_KEY_BYTES:
        raise ConfigurationError(
            f"LETHE_ARTIFACT_KEY must decode to {ARTIFACT_KEY_BYTES} bytes, got {len(raw)} "
            "(make one with `openssl rand -base64 32`)"
        )
    return raw


def encrypt(key: bytes, plaintext: bytes, associated_data: bytes = b"") -> bytes:
    """AES-256-GCM; output is nonce || ciphertext+tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def decrypt(key: bytes, blob: bytes, associated_data: bytes = b"") -> bytes:
    """Inverse of :func:`encrypt`; raises ``cryptography.exceptions.InvalidTag`` on tampering."""
    return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated_data)


def generate_signing_key_pem() -> str:
    """A new Ed25519 private key in PKCS#8 PEM (for demo mode and operators' tooling)."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def load_signing_key(value: str) -> Ed25519PrivateKey:
    """Load the audit signing key from PEM or from 32 raw bytes in base64."""
    try:
        if "BEGIN" in value:
            key = serialization.load_pem_private_key(value.encode("ascii"), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(value))
    except ValueError as exc:
        raise ConfigurationError("LETHE_AUDIT_SIGNING_KEY is not an Ed25519 private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError("LETHE_AUDIT_SIGNING_KEY is not an Ed25519 private key")
    return key


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """PEM of the public half, for operators who verify checkpoints elsewhere."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
