"""Settings read once from ``LETHE_*`` environment variables (secrets also from ``*_FILE``)."""

from __future__ import annotations

import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec

from app.lib.errors import ConfigurationError

__all__ = ("SECRET_FIELDS", "Settings", "get_settings", "load_settings")

ENV_PREFIX = "LETHE_"
SECRET_FIELDS = (
    "jwt_secret",
    "audit_key",
    "artifact_key",
    "audit_signing_key",
    "database_url",
    "audit_chain_key",
    "audit_chain_previous_keys",
    "artifact_s3_access_key_id",
    "artifact_s3_secret_access_key",
)
"""Fields that may also be read from the file named by ``LETHE_<NAME>_FILE``."""


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Every knob of the service. Each field maps to ``LETHE_<FIELD>`` in upper case."""

    demo: bool = False
    """Demo mode: missing secrets come from ``.lethe/demo-secrets.json`` (created once, kept)."""
    database_url: str = "sqlite+aiosqlite:///.lethe/lethe.db"
    """Service store. SQLite (embedded default) or ``postgresql+asyncpg://...``."""
    database_pool_size: int = 10
    """Connections kept per replica when the store is PostgreSQL."""
    group_commit_batch_size: int = 500
    """Most units (a consent and its audit event, ...) the group committer writes per commit."""
    group_commit_queue_size: int = 10000
    """Most units waiting for the group committer; callers beyond it wait for room (backpressure)."""
    jwt_secret: str | None = None
    """HS256 shared secret, at least 32 bytes."""
    jwt_public_key: str | None = None
    """PEM public key for RS256/ES256 tokens."""
    jwks_url: str | None = None
    """JWKS endpoint of the identity provider; keys are cached."""
    jwks_cache_seconds: int = 300
    """How long fetched JWKS keys are trusted before being fetched again."""
    jwt_algorithms: str = "HS256"
    """Space or comma separated list of accepted algorithms; nothing else is ever accepted."""
    jwt_audience: str = "lethe"
    """Required ``aud`` claim."""
    jwt_issuer: str = "lethe"
    """Required ``iss`` claim."""
    jwt_leeway_seconds: int = 30
    """Clock skew tolerated on ``exp``/``iat``/``nbf``."""
    audit_key: str | None = None
    """HMAC key for pseudonymous subject references in the audit log, consent ledger, tombstones."""
    audit_chain_key: str | None = None
    """HMAC key (at least 32 bytes) linking the audit chain; the database never holds it."""
    audit_chain_epoch: int = 1
    """Epoch of ``audit_chain_key``: raise it when rotating the key (each event records its epoch)."""
    audit_chain_previous_keys: str | None = None
    """Keys of earlier epochs, ``<epoch>:<key>`` separated by spaces: old events still verify."""
    audit_checkpoint_path: str | None = None
    """File outside the store where signed checkpoints are appended (JSON lines) by the workers."""
    audit_checkpoint_interval_seconds: float = 60.0
    """How often a new checkpoint is written when the chain has grown."""
    audit_sequencer_batch_size: int = 1000
    """Pending audit events the sequencer links per transaction (one commit per batch)."""
    audit_sequencer_poll_seconds: float = 0.2
    """How often the active sequencer looks for events of other replicas (this one's wake it)."""
    audit_sequencer_gather_seconds: float = 0.02
    """After a wake-up, the sequencer waits this long so one batch (one commit) links many writes."""
    audit_sequencer_lease_seconds: int = 10
    """The active sequencer holds its lease this long past its last batch; then another takes over."""
    audit_signing_key: str | None = None
    """Ed25519 private key (PEM, or 32 raw bytes base64) for signed audit checkpoints."""
    artifact_key: str | None = None
    """AES-256-GCM key (32 bytes, base64) encrypting export artifacts at rest."""
    manifests_dir: str | None = None
    """Directory of manifest files registered at start-up."""
    manifest_strict: bool = False
    """Strict manifests: personal-looking columns the manifest leaves uncovered (lint findings no
    ``ignore:`` entry acknowledges) refuse registration instead of being reported."""
    artifacts_dir: str = ".lethe/artifacts"
    """Where encrypted export artifacts are written (``filesystem`` storage)."""
    artifact_ttl_days: int = 30
    """Export artifacts expire and are purged after this many days."""
    artifact_storage: str = "filesystem"
    """Where export artifacts are kept: ``filesystem`` (``artifacts_dir``, one replica unless the
    volume is shared) or ``s3`` (an S3-compatible bucket: AWS S3, MinIO, Ceph; any replica count)."""
    artifact_s3_bucket: str | None = None
    """Bucket of the ``s3`` artifact storage."""
    artifact_s3_prefix: str = "lethe/artifacts"
    """Key prefix inside the bucket under which artifacts are written."""
    artifact_s3_endpoint_url: str | None = None
    """Endpoint of a non-AWS S3 API (``http://minio:9000``, a Ceph RGW); unset for AWS S3."""
    artifact_s3_region: str | None = None
    """Region of the bucket (``us-east-1`` when unset and no ``AWS_REGION`` is set)."""
    artifact_s3_access_key_id: str | None = None
    """Access key of the bucket; unset: the default credential chain (``AWS_*`` variables, a
    pod's web identity token, instance metadata)."""
    artifact_s3_secret_access_key: str | None = None
    """Secret key paired with ``artifact_s3_access_key_id``."""
    workers_enabled: bool = True
    """Run request workers and the retention scheduler in this process (off for API-only replicas)."""
    worker_concurrency: int = 4
    """Requests processed at once by one replica (SQLite always uses one); most of a request's
    time is spent waiting on the store and the targets, so a few overlap well on one core."""
    worker_lease_seconds: int = 60
    """A claimed request whose heartbeat is older than this is taken over by another worker."""
    worker_poll_seconds: float = 1.0
    """Idle workers look for new work this often."""
    worker_max_attempts: int = 5
    """Claims of one request before a target that stays unreachable, or a store that keeps dropping
    its connection, fails it (retried per lease)."""
    approval_required: str = ""
    """Request kinds that wait for approval before running (e.g. ``erasure``)."""
    approval_four_eyes: bool = True
    """The principal (token ``sub`` or client) that created a request may not approve it."""
    erasure_batch_threshold: int = 50_000
    """Above this many rows in one table, erasure switches to resumable keyset batches."""
    erasure_batch_size: int = 5_000
    """Rows per keyset batch when a footprint is batched."""
    retention_lock_timeout_ms: int = 2000
    """How long one retention batch waits for a row lock before it gives up and retries."""
    retention_statement_timeout_seconds: float = 30.0
    """Longest statement of one retention batch; a batch that hits it is retried with a narrower range."""
    retention_max_runtime_seconds: float = 900.0
    """A scheduled or CLI retention run works this long, then stops as ``incomplete`` to resume later."""
    retention_request_runtime_seconds: float = 20.0
    """A run started over HTTP works this long before answering; the scheduler resumes the rest."""
    retention_lease_seconds: int = 120
    """A replica running a policy holds it this long past its last batch; then another may resume."""
    retention_poll_seconds: float = 30.0
    """The in-service retention scheduler looks for due policies this often."""
    erasure_batch_delay_seconds: float = 0.0
    """Test-only: pause after every committed erasure batch so a crash test can kill a worker."""
    target_url_variables: str = ""
    """Further environment variables (besides ``LETHE_TARGET_<SYSTEM>_URL``) manifests may name."""
    target_url_files: str = ""
    """Files (or directories of files) holding target URLs that manifests may name."""
    target_connect_timeout_seconds: float = 5.0
    """Connect timeout to target databases."""
    target_statement_timeout_seconds: float = 60.0
    """Statement timeout on target databases (PostgreSQL, MariaDB)."""
    max_body_bytes: int = 1_048_576
    """Largest accepted request body; larger bodies get 413."""
    rate_limits: str = "requests:write=120/60 consent:write=1200/60 manifests:write=60/60"
    """Per-client limits by scope, ``<scope>=<calls>/<seconds>`` separated by spaces; counted in
    the store, so replicas share them. Scopes not listed are not limited; empty turns limits off."""
    max_page_size: int = 200
    """Upper bound on ``limit`` in list endpoints."""
    log_level: str = "INFO"
    """Root log level; logs are JSON lines and never carry personal data."""
    backup_rpo_seconds: int = 86_400
    """Recovery point objective: a newest backup older than this is critical."""
    backup_sources: str | None = None
    """YAML/JSON file of each system's backup sources (dump directories, pgBackRest, WAL-G)."""
    backup_command_timeout_seconds: float = 60.0
    """Longest wait for ``pgbackrest info`` / ``wal-g backup-list`` when checking health."""
    backup_restore_timeout_seconds: float = 1800.0
    """A restore test (pg_restore and checks) is stopped and failed past this; its scratch
    database is dropped all the same."""
    backup_check_interval_seconds: float = 300.0
    """How often workers refresh the backup gauges of ``/metrics`` (0: only on demand)."""
    webhook_allowed_hosts: str = ""
    """Webhook destinations allowed although they are not public: host names or networks (CIDR),
    separated by spaces. Only these may resolve to loopback/private/link-local addresses or use
    plain ``http``; every other URL must be ``https`` to a public address."""
    webhook_retry_period_seconds: int = 259_200
    """A delivery is retried (exponential backoff with jitter) this long, then marked dead."""
    webhook_backoff_base_seconds: float = 10.0
    """The first retry waits about this long; each further one twice as long (with jitter)."""
    webhook_backoff_max_seconds: float = 3600.0
    """Longest wait between two attempts of one delivery."""
    webhook_connect_timeout_seconds: float = 5.0
    """Connect timeout of a webhook delivery."""
    webhook_read_timeout_seconds: float = 10.0
    """Read timeout of a webhook delivery (the receiver should answer 2xx first, work later)."""
    webhook_response_limit_bytes: int = 4096
    """At most this much of a receiver's answer is read (and it is never logged)."""
    webhook_lease_seconds: int = 60
    """A delivery being sent is leased this long; past it another worker may send it again."""
    webhook_poll_seconds: float = 1.0
    """Idle delivery workers look for due deliveries this often."""
    webhook_batch_size: int = 16
    """Due deliveries a sender leases in one transaction and posts concurrently; their outcomes
    are written in one transaction too (1: one delivery at a time)."""
    webhook_secret_overlap_seconds: int = 86_400
    """After a secret rotation, the previous secret also signs deliveries for this long."""
    webhook_keep_days: int = 30
    """Delivered and dead deliveries (and their events) are deleted this many days after creation."""
    external_identities_ttl_seconds: int = 3600
    """An external system's one-time read of its task's identities is possible this long after
    the task is opened; later it answers 410 (the task can still be reported)."""
    external_export_part_bytes: int = 262_144
    """Largest export part (encoded JSON) an external system may report with an access task."""
    request_due_soon_hours: int = 72
    """``request.due_soon`` is sent this long before a request's deadline in force."""
    deadline_check_interval_seconds: float = 300.0
    """How often workers look for requests nearing or past their deadline (events)."""
    export_batch_rows: int = 2_000
    """Rows fetched per round trip when exporting (bounds memory; larger is faster)."""
    export_batch_delay_seconds: float = 0.0
    """Test-only: pause after every exported batch so a crash test can kill a worker mid-export.

    Leave at 0 in production."""

    @property
    def algorithms(self) -> list[str]:
        """The pinned JWT algorithms."""
        return [a for a in self.jwt_algorithms.replace(",", " ").split() if a]

    @property
    def approval_kinds(self) -> frozenset[str]:
        """Request kinds that need approval."""
        return frozenset(k for k in self.approval_required.replace(",", " ").split() if k)

    @property
    def target_variable_names(self) -> frozenset[str]:
        """Variables the operator named for target URLs besides the default pattern."""
        return frozenset(v for v in self.target_url_variables.replace(",", " ").split() if v)

    @property
    def target_url_file_paths(self) -> tuple[str, ...]:
        """Files or directories the operator named for target URLs."""
        return tuple(p for p in self.target_url_files.replace(",", " ").split() if p)

    @property
    def own_variable_names(self) -> frozenset[str]:
        """Every variable the service reads for itself: never a target's URL."""
        names = {ENV_PREFIX + name.upper() for name in Settings.__struct_fields__}
        return frozenset(names | {f"{name}_FILE" for name in names})

    def chain_keys(self) -> dict[int, bytes]:
        """Every audit chain key by epoch: the previous ones and the current one.

        Raises:
            ConfigurationError: an entry of ``LETHE_AUDIT_CHAIN_PREVIOUS_KEYS`` is not ``<epoch>:<key>``.
        """
        keys: dict[int, bytes] = {}
        for entry in (self.audit_chain_previous_keys or "").split():
            epoch, _, key = entry.partition(":")
            if not epoch.isdigit() or not key:
                raise ConfigurationError("LETHE_AUDIT_CHAIN_PREVIOUS_KEYS: entries are <epoch>:<key>")
            keys[int(epoch)] = key.encode()
        if self.audit_chain_key:
            keys[self.audit_chain_epoch] = self.audit_chain_key.encode()
        return keys

    @property
    def is_sqlite(self) -> bool:
        """Whether the service store is an embedded SQLite file."""
        return self.database_url.startswith("sqlite")


def _read_env(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Settings.__struct_fields__:
        key = ENV_PREFIX + name.upper()
        if key in environ:
            values[name] = environ[key]
        elif name in SECRET_FIELDS and f"{key}_FILE" in environ:
            path = Path(environ[f"{key}_FILE"])
            try:
                values[name] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigurationError(f"{key}_FILE: cannot read {path}: {exc.strerror}") from exc
    return values


def _demo_secrets(home: Path) -> dict[str, str]:
    """Secrets for demo mode, created once under ``.lethe/`` and reused by every process."""
    path = home / "demo-secrets.json"
    if path.exists():
        loaded: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
        if "audit_chain_key" not in loaded:  # written by an older version: add the chain key once
            loaded["audit_chain_key"] = secrets.token_urlsafe(48)
            path.write_text(json.dumps(loaded), encoding="utf-8")
        return loaded
    from app.lib.crypto import generate_signing_key_pem

    home.mkdir(parents=True, exist_ok=True)
    created = {
        "jwt_secret": secrets.token_urlsafe(48),
        "audit_key": secrets.token_urlsafe(48),
        "artifact_key": secrets.token_urlsafe(32),
        "audit_signing_key": generate_signing_key_pem(),
        "audit_chain_key": secrets.token_urlsafe(48),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(created, handle)
    return created


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from an environment mapping and check that secrets are present.

    Raises:
        ConfigurationError: a value does not parse or a required secret is missing; the message
            is one line naming the variable.
    """
    env = dict(os.environ if environ is None else environ)
    values = _read_env(env)
    try:
        settings = msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        field = str(exc).rsplit("$.", 1)[-1].rstrip("`")
        raise ConfigurationError(f"{ENV_PREFIX}{field.upper()}: {exc}") from exc
    if settings.demo:
        fallback = _demo_secrets(Path(".lethe"))
        missing = {k: v for k, v in fallback.items() if getattr(settings, k) is None}
        settings = msgspec.structs.replace(settings, **missing)
    _check_required(settings)
    from app.lib.settings_checks import check_settings

    check_settings(settings)
    return settings


def _check_required(settings: Settings) -> None:
    if not (settings.jwt_secret or settings.jwt_public_key or settings.jwks_url):
        raise ConfigurationError(
            "LETHE_JWT_SECRET is not set (or LETHE_JWT_SECRET_FILE, LETHE_JWT_PUBLIC_KEY, LETHE_JWKS_URL)"
        )
    if settings.jwt_secret is not None and len(settings.jwt_secret.encode()) < 32:
        raise ConfigurationError("LETHE_JWT_SECRET must be at least 32 bytes")
    if not settings.audit_key:
        raise ConfigurationError("LETHE_AUDIT_KEY is not set (or LETHE_AUDIT_KEY_FILE)")
    if len(settings.audit_key.encode()) < 32:
        raise ConfigurationError("LETHE_AUDIT_KEY must be at least 32 bytes")
    _check_chain_keys(settings)
    unknown = set(settings.algorithms) - {"HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"}
    if unknown or not settings.algorithms:
        raise ConfigurationError(f"LETHE_JWT_ALGORITHMS: unsupported {sorted(unknown) or 'empty'}")


def _check_chain_keys(settings: Settings) -> None:
    if not settings.audit_chain_key:
        raise ConfigurationError("LETHE_AUDIT_CHAIN_KEY is not set (or LETHE_AUDIT_CHAIN_KEY_FILE)")
    if len(settings.audit_chain_key.encode()) < 32:
        raise ConfigurationError("LETHE_AUDIT_CHAIN_KEY must be at least 32 bytes")
    if settings.audit_chain_epoch < 1:
        raise ConfigurationError("LETHE_AUDIT_CHAIN_EPOCH must be 1 or more")
    settings.chain_keys()  # entries of LETHE_AUDIT_CHAIN_PREVIOUS_KEYS parse


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
