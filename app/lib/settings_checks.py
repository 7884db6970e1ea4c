"""Start-up checks of every setting's value, unknown ``LETHE_*`` variables, keys a replica lacks."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from app.lib.errors import ConfigurationError
from app.lib.kinds import REQUEST_KINDS

if TYPE_CHECKING:
    from app.config import Settings

__all__ = ("check_settings", "missing_keys", "unknown_variables")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
STORE_DRIVERS = ("postgresql+asyncpg", "sqlite+aiosqlite")
ZERO_ALLOWED = frozenset({"jwt_leeway_seconds", "backup_check_interval_seconds"})
"""Numbers whose default is not 0 but for which 0 still means something (no skew, on demand)."""
FOREIGN_PREFIXES = ("LETHE_TARGET_", "LETHE_TEST_")
"""``LETHE_*`` variables that are not settings: target URLs named by manifests, test servers."""


def _variable(field: str) -> str:
    return f"LETHE_{field.upper()}"


def _check_numbers(settings: Settings) -> None:
    """No number is negative; one whose default is not 0 must be above 0 (0 would stall or refuse all)."""
    from app.config import Settings

    defaults = Settings.__struct_defaults__
    fields = Settings.__struct_fields__
    offset = len(fields) - len(defaults)
    for index, name in enumerate(fields):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        default = defaults[index - offset] if index >= offset else None
        zero_ok = default == 0 or name in ZERO_ALLOWED
        if value < 0 or (value == 0 and not zero_ok):
            bound = "at least 0" if zero_ok else "above 0"
            raise ConfigurationError(f"{_variable(name)} must be {bound}, got {value}")


def _check_log_level(settings: Settings) -> None:
    if settings.log_level.upper() not in LOG_LEVELS:
        raise ConfigurationError(
            f"LETHE_LOG_LEVEL: unknown level {settings.log_level!r}; use one of {', '.join(LOG_LEVELS)}"
        )


def _check_approval(settings: Settings) -> None:
    unknown = sorted(settings.approval_kinds - set(REQUEST_KINDS))
    if unknown:
        named = ", ".join(f"{kind!r}{_hint(kind, REQUEST_KINDS)}" for kind in unknown)
        raise ConfigurationError(
            f"LETHE_APPROVAL_REQUIRED: unknown request kind {named}; kinds are {', '.join(REQUEST_KINDS)}"
        )


def _check_store_url(settings: Settings) -> None:
    driver, separator, _ = settings.database_url.partition("://")
    if not separator:
        raise ConfigurationError("LETHE_DATABASE_URL is not a database URL (driver://…)")
    if driver not in STORE_DRIVERS:
        raise ConfigurationError(
            f"LETHE_DATABASE_URL: driver {driver!r} is not supported; use postgresql+asyncpg://… "
            "or sqlite+aiosqlite:///…"
        )


def _check_keys(settings: Settings) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from app.lib.crypto import aes_key, load_signing_key

    if settings.artifact_key:
        aes_key(settings.artifact_key)
    if settings.audit_signing_key:
        load_signing_key(settings.audit_signing_key)
    if settings.jwt_public_key:
        try:
            load_pem_public_key(settings.jwt_public_key.encode("ascii"))
        except (ValueError, TypeError, UnicodeEncodeError):
            raise ConfigurationError("LETHE_JWT_PUBLIC_KEY is not a PEM public key") from None
    if settings.jwks_url:
        parts = urlsplit(settings.jwks_url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ConfigurationError("LETHE_JWKS_URL must be an https:// URL")


def _check_paths(settings: Settings) -> None:
    if settings.manifests_dir and not Path(settings.manifests_dir).is_dir():
        raise ConfigurationError(f"LETHE_MANIFESTS_DIR: {settings.manifests_dir} is not a directory")


ARTIFACT_STORAGES = ("filesystem", "s3")


def _check_artifact_storage(settings: Settings) -> None:
    if settings.artifact_storage not in ARTIFACT_STORAGES:
        raise ConfigurationError(
            f"LETHE_ARTIFACT_STORAGE: unknown storage {settings.artifact_storage!r}"
            f"{_hint(settings.artifact_storage, ARTIFACT_STORAGES)}; use filesystem or s3"
        )
    if settings.artifact_storage != "s3":
        return
    if not settings.artifact_s3_bucket:
        raise ConfigurationError("LETHE_ARTIFACT_S3_BUCKET is not set (LETHE_ARTIFACT_STORAGE is s3)")
    if bool(settings.artifact_s3_access_key_id) != bool(settings.artifact_s3_secret_access_key):
        raise ConfigurationError(
            "LETHE_ARTIFACT_S3_ACCESS_KEY_ID and LETHE_ARTIFACT_S3_SECRET_ACCESS_KEY go together "
            "(or neither, for the default credential chain)"
        )
    if settings.artifact_s3_endpoint_url:
        parts = urlsplit(settings.artifact_s3_endpoint_url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ConfigurationError("LETHE_ARTIFACT_S3_ENDPOINT_URL must be an http(s):// URL")


def _check_texts(settings: Settings) -> None:
    for name in ("jwt_audience", "jwt_issuer"):
        if not getattr(settings, name).strip():
            raise ConfigurationError(f"{_variable(name)} must not be empty")


CHECKS: tuple[Callable[[Settings], None], ...] = (
    _check_numbers,
    _check_log_level,
    _check_approval,
    _check_store_url,
    _check_keys,
    _check_paths,
    _check_artifact_storage,
    _check_texts,
)
"""Every value check run at start-up, in order; the first failure stops start-up."""


def check_settings(settings: Settings) -> None:
    """Validate every setting's value, so a typo stops start-up instead of changing behaviour.

    Raises:
        ConfigurationError: one line naming the variable and what is wrong (never a secret's value).
    """
    for check in CHECKS:
        check(settings)


def _hint(name: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def known_variables() -> list[str]:
    """Every ``LETHE_*`` variable a setting is read from (``_FILE`` forms of secrets included)."""
    from app.config import SECRET_FIELDS, Settings

    names = [_variable(name) for name in Settings.__struct_fields__]
    return sorted([*names, *(f"{_variable(name)}_FILE" for name in SECRET_FIELDS)])


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning per ``LETHE_*`` variable that no setting reads, naming the closest known one."""
    known = known_variables()
    warnings = []
    for name in sorted(environ):
        if not name.startswith("LETHE_") or name in known or name.startswith(FOREIGN_PREFIXES):
            continue
        warnings.append(f"{name} is not a Lethe setting and is ignored{_hint(name, known)}")
    return warnings


def missing_keys(settings: Settings) -> list[str]:
    """Keys this replica needs to serve but lacks (readiness reports them as 503)."""
    missing = []
    if not settings.artifact_key:
        missing.append("LETHE_ARTIFACT_KEY is not set: requests cannot store identities nor exports")
    return missing
