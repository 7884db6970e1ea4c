"""Keys and Python twins of the digests surrogates compute in SQL (HMAC-SHA256 for ``hash``, MD5
for ``uuid``).

``hash`` is HMAC-SHA256 computed in SQL without extensions: the inner and outer pads of the key are
bound as parameters, and the database only needs SHA-256 (PostgreSQL ``sha256()``, MariaDB/MySQL
``SHA2()``, SQLite a function registered on the connection by :func:`install_sqlite_functions`),
so pgcrypto's ``hmac()`` is never required; the SQL of each database is built by
:meth:`app.engine.dialects.Dialect.hmac_sha256`. The key is derived from the service's audit key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, func, literal, literal_column
from sqlalchemy.sql.elements import ColumnElement

from app.engine.dialects import SQLITE_HMAC_FUNCTION, SQLITE_MD5_FUNCTION, Dialect

__all__ = (
    "BindFactory",
    "HashKey",
    "hash_key_from_secret",
    "install_sqlite_functions",
    "placeholder_bind",
    "plain_bind",
    "uuid_for_key",
    "uuid_sql",
)

HASH_KEY_LABEL = "lethe-erasure-surrogate-hash-v1"
UUID_SEED = "erased:"
"""What the ``uuid`` surrogate puts before the row key in its MD5 message."""


@dataclass(frozen=True)
class HashKey:
    """The key of the ``hash`` surrogate, as HMAC inner/outer pads bound into SQL."""

    key: bytes

    @property
    def inner_pad(self) -> bytes:
        """``K xor ipad`` (the key padded to the SHA-256 block of 64 bytes)."""
        return bytes(b ^ 0x36 for b in self.key.ljust(64, b"\x00"))

    @property
    def outer_pad(self) -> bytes:
        """``K xor opad``."""
        return bytes(b ^ 0x5C for b in self.key.ljust(64, b"\x00"))

    def digest(self, value: str) -> str:
        """What the SQL computes for ``value`` (hex HMAC-SHA256), for tests and verification."""
        return hmac.new(self.key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def hash_key_from_secret(secret: str) -> HashKey:
    """Derive the ``hash`` surrogate key from the service secret (the audit key).

    A separate derivation keeps surrogate hashes in targets unrelated to audit references.
    """
    derived = hmac.new(secret.encode("utf-8"), HASH_KEY_LABEL.encode(), hashlib.sha256).digest()
    return HashKey(derived)


BindFactory = Callable[[str, Any, Any], ColumnElement[Any]]


def placeholder_bind(name: str, _value: Any, _type: Any) -> ColumnElement[Any]:
    """A bind shown by name (``:surrogate_hash_inner_pad``): how plans display secrets."""
    return literal_column(f":{name}")


def plain_bind(_name: str, value: Any, type_: Any) -> ColumnElement[Any]:
    """A bind carrying its value (execution)."""
    return literal(value, type_)


def uuid_sql(dialect: Dialect, key_text: ColumnElement[str]) -> ColumnElement[str]:
    """The SQL of :func:`uuid_for_key`: the MD5 of ``'erased:' || key`` as an RFC 9562 version 3
    UUID (version nibble 3, variant bits 10): MariaDB's UUID type and every validator accept it."""
    digest = dialect.md5_hex(literal(UUID_SEED, String) + key_text)
    nibble = dialect.code_point(func.substr(digest, 17, 1)) % 4
    variant = func.substr(literal("89ab", String), nibble + 1, 1)
    parts = [
        func.substr(digest, 1, 8),
        literal("-", String),
        func.substr(digest, 9, 4),
        literal("-3", String),
        func.substr(digest, 14, 3),
        literal("-", String),
        variant,
        func.substr(digest, 18, 3),
        literal("-", String),
        func.substr(digest, 21, 12),
    ]
    text = parts[0]
    for part in parts[1:]:
        text = text + part
    return text


def uuid_for_key(key_text: str) -> str:
    """What the ``uuid`` surrogate computes for a row key (tests and verification recompute it)."""
    digest = hashlib.md5((UUID_SEED + key_text).encode(), usedforsecurity=False).hexdigest()
    variant = "89ab"[ord(digest[16]) % 4]
    return f"{digest[:8]}-{digest[8:12]}-3{digest[13:16]}-{variant}{digest[17:20]}-{digest[20:32]}"


def _sqlite_hmac(inner_pad: bytes, outer_pad: bytes, value: str | None) -> str | None:
    if value is None:
        return None
    message = str(value).encode("utf-8")
    inner = hashlib.sha256(bytes(inner_pad) + message).digest()
    return hashlib.sha256(bytes(outer_pad) + inner).hexdigest()


def install_sqlite_functions(dbapi_connection: Any) -> None:
    """Register the SQL functions surrogates use on a SQLite connection (HMAC for ``hash``).

    Takes a ``sqlite3`` connection or SQLAlchemy's aiosqlite adapter (call it inside
    ``run_sync`` or a ``connect`` event, where the adapter can wait on the driver).
    """
    dbapi_connection.create_function(SQLITE_HMAC_FUNCTION, 3, _sqlite_hmac, deterministic=True)
    dbapi_connection.create_function(SQLITE_MD5_FUNCTION, 1, _sqlite_md5, deterministic=True)


def _sqlite_md5(value: str | None) -> str | None:
    if value is None:
        return None
    return hashlib.md5(str(value).encode("utf-8"), usedforsecurity=False).hexdigest()
