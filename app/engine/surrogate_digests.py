"""SQL digests surrogates are computed with (HMAC-SHA256 for ``hash``, MD5 for ``uuid``), per dialect.

``hash`` is HMAC-SHA256 computed in SQL without extensions: the inner and outer pads of the key are
bound as parameters, and the database only needs SHA-256 (PostgreSQL ``sha256()``, MariaDB/MySQL
``SHA2()``, SQLite a function registered on the connection by :func:`install_sqlite_functions`),
so pgcrypto's ``hmac()`` is never required. The key is derived from the service's audit key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, LargeBinary, String, func, literal, literal_column
from sqlalchemy.sql.elements import ColumnElement

__all__ = (
    "BindFactory",
    "HashKey",
    "ascii_sql",
    "hash_key_from_secret",
    "hmac_sql",
    "install_sqlite_functions",
    "md5_sql",
    "placeholder_bind",
    "plain_bind",
    "uuid_for_key",
    "uuid_sql",
)

HASH_KEY_LABEL = "lethe-erasure-surrogate-hash-v1"
SQLITE_HMAC_FUNCTION = "lethe_hmac_sha256"
SQLITE_MD5_FUNCTION = "lethe_md5"
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


def hmac_sql(dialect: str, key: HashKey, value: ColumnElement[str], bind: BindFactory) -> ColumnElement[str]:
    """HMAC-SHA256(key, value) as lower-case hex, computed by the target database.

    Raises:
        ValueError: the dialect has no such function here.
    """
    inner = bind("surrogate_hash_inner_pad", key.inner_pad, LargeBinary)
    outer = bind("surrogate_hash_outer_pad", key.outer_pad, LargeBinary)
    if dialect == "postgresql":
        message = func.convert_to(value, literal("UTF8", String))
        inner_hash = func.sha256(inner.op("||", return_type=LargeBinary)(message))
        outer_hash = func.sha256(outer.op("||", return_type=LargeBinary)(inner_hash))
        return func.encode(outer_hash, literal("hex", String), type_=String)
    if dialect == "mysql":  # asyncmy sends bytes as text: bind hex, decode in SQL
        inner = func.unhex(bind("surrogate_hash_inner_pad", key.inner_pad.hex(), String))
        outer = func.unhex(bind("surrogate_hash_outer_pad", key.outer_pad.hex(), String))
        inner_hash = func.unhex(func.sha2(func.concat(inner, value), 256))
        return func.lower(func.sha2(func.concat(outer, inner_hash), 256), type_=String)
    if dialect == "sqlite":
        hmac_function: ColumnElement[str] = getattr(func, SQLITE_HMAC_FUNCTION)(
            inner, outer, value, type_=String
        )
        return hmac_function
    raise ValueError(f"`hash` is not supported on {dialect}")


def uuid_for_key(key_text: str) -> str:
    """What the ``uuid`` surrogate computes for a row key (tests and verification recompute it)."""
    digest = hashlib.md5((UUID_SEED + key_text).encode(), usedforsecurity=False).hexdigest()
    variant = "89ab"[ord(digest[16]) % 4]
    return f"{digest[:8]}-{digest[8:12]}-3{digest[13:16]}-{variant}{digest[17:20]}-{digest[20:32]}"


def uuid_sql(dialect: str, key_text: ColumnElement[str]) -> ColumnElement[str]:
    """The SQL of :func:`uuid_for_key`: the MD5 of ``'erased:' || key`` as an RFC 9562 version 3
    UUID (version nibble 3, variant bits 10): MariaDB's UUID type and every validator accept it."""
    digest = md5_sql(dialect, literal(UUID_SEED, String) + key_text)
    variant = func.substr(
        literal("89ab", String), (ascii_sql(dialect, func.substr(digest, 17, 1)) % 4) + 1, 1
    )
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


def md5_sql(dialect: str, value: ColumnElement[str]) -> ColumnElement[str]:
    """Hex MD5 of ``value`` in SQL (SQLite: a function :func:`install_sqlite_functions` registers)."""
    if dialect == "sqlite":
        md5: ColumnElement[str] = getattr(func, SQLITE_MD5_FUNCTION)(value, type_=String)
        return md5
    return func.md5(value, type_=String)


def ascii_sql(dialect: str, value: ColumnElement[str]) -> ColumnElement[int]:
    """The code point of a one-character string."""
    if dialect == "sqlite":
        return func.unicode(value, type_=Integer)
    return func.ascii(value, type_=Integer)


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
