"""Realistic bodies the OpenAPI document shows for every request body and main answer.

They describe the demo shop (``make demo``): pasted into the docs page of a demo server, the
request examples work as they are.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from app.domain.audit.schemas import (
    AuditEventOut,
    AuditEventPage,
    ChainVerification,
    CheckpointOut,
    PendingAuditEventOut,
    PendingAuditEventPage,
)
from app.domain.backups.schemas import (
    BackupCheck,
    BackupHealthOut,
    RestoreTestIn,
    RestoreTestOut,
    SystemHealthOut,
)
from app.domain.consent.schemas import ConsentEventIn, ConsentEventOut, ConsentEventPage, ConsentStatusOut
from app.domain.external.examples import EXTERNAL_EXAMPLES
from app.domain.manifests.schemas import (
    IssueOut,
    ManifestPage,
    ManifestVersionOut,
    ManifestVersionSummary,
    Registration,
    ValidationReport,
)
from app.domain.recipients.examples import RECIPIENT_EXAMPLES, RECIPIENTS
from app.domain.requests.schemas import (
    ErasurePlanOut,
    ExtensionIn,
    RequestIn,
    RequestOut,
    RequestPage,
    SystemPlanOut,
    SystemProgressOut,
    TablePlanOut,
)
from app.domain.retention.schemas import (
    FilterIn,
    FilterOut,
    PolicyIn,
    PolicyOut,
    PolicyPage,
    PolicyPatch,
    RunOut,
    RunPage,
)
from app.domain.system.schemas import Health, Readiness
from app.domain.webhooks.examples import WEBHOOK_EXAMPLES
from app.lib.schema import BodyExample, Problem, ProblemFieldError

__all__ = ("EXAMPLES", "MANIFEST_JSON", "MANIFEST_YAML")

REQUEST_ID = uuid.UUID("0b9f4c7e-3a53-4f4e-9d0b-7d2f0a6c1e42")
POLICY_ID = uuid.UUID("5d1e8f0a-2c4b-4a9e-8f3d-1b2c3d4e5f60")
RECEIVED = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
DONE = datetime(2026, 5, 4, 9, 30, 7, tzinfo=UTC)
SUBJECT_REF = "hmac-sha256:2f1d0c9a7b3e4d5f"
HASH = "9b74c9897bac770ffc029102a200c5de1a5e5d0d3d3d7d1b2f0e5a4c3b2a1908"

MANIFEST_YAML = """\
system: shop
connection:
  env: LETHE_TARGET_SHOP_URL
subject:
  table: users
  key: id
  identities: {email: email, user_id: id}
tables:
  users:
    purpose: customer account
    legal_basis: contract (Art. 6(1)(b))
    strategy: anonymize
    columns:
      email: {category: user.contact.email, surrogate: email, rectifiable: true}
      full_name: {category: user.name, rectifiable: true}
"""
"""A small manifest of the demo shop, as a caller sends it (``Content-Type: application/yaml``)."""

MANIFEST_JSON = {
    "system": "shop",
    "connection": {"env": "LETHE_TARGET_SHOP_URL"},
    "subject": {"table": "users", "key": "id", "identities": {"email": "email", "user_id": "id"}},
    "tables": {
        "users": {
            "purpose": "customer account",
            "legal_basis": "contract (Art. 6(1)(b))",
            "strategy": "anonymize",
            "columns": {
                "email": {"category": "user.contact.email", "surrogate": "email", "rectifiable": True},
                "full_name": {"category": "user.name", "rectifiable": True},
            },
        }
    },
}
"""The same manifest as JSON (``Content-Type: application/json``)."""
_SUMMARY = ManifestVersionSummary(
    system="shop", version=3, content_hash=HASH, created_at=RECEIVED, created_by="billing-service"
)
_VERSION = ManifestVersionOut(
    system="shop",
    version=3,
    content_hash=HASH,
    created_at=RECEIVED,
    created_by="billing-service",
    manifest=MANIFEST_JSON,
)
_FINDING = IssueOut(
    kind="unclassified_column",
    severity="finding",
    path="tables.users.columns",
    message="column 'nickname' of table 'users' may hold personal data and is not declared",
    table="users",
    column="nickname",
)
_PROGRESS = SystemProgressOut(
    system="shop",
    manifest_version=3,
    status="completed",
    not_found=False,
    counts={"users": 1, "orders": 4, "order_items": 9},
    error=None,
)
_REQUEST = RequestOut(
    id=REQUEST_ID,
    kind="access",
    status="completed",
    received_at=RECEIVED,
    due_at=datetime(2026, 6, 4, 9, 30, tzinfo=UTC),
    extended_due_at=None,
    extension_reason=None,
    overdue=False,
    dry_run=False,
    subject_ref=SUBJECT_REF,
    identity_types=["email"],
    attempt=1,
    started_at=datetime(2026, 5, 4, 9, 30, 2, tzinfo=UTC),
    completed_at=DONE,
    failure_reason=None,
    export_available=True,
    export_expires_at=datetime(2026, 5, 11, 9, 30, 7, tzinfo=UTC),
    systems=[_PROGRESS],
)
_TABLE_PLAN = TablePlanOut(
    table="users",
    strategy="anonymize",
    rows=1,
    links=["users"],
    legal_basis="contract (Art. 6(1)(b))",
    retention=None,
    changed_columns={"email": "email surrogate", "full_name": "null"},
    retained_columns=["id", "created_at"],
    sql=["UPDATE users SET email = :email_1, full_name = NULL WHERE users.id = :subject_key_0"],
    batched=False,
    outside_references=[],
)
_EVENT = AuditEventOut(
    seq=1042,
    occurred_at=DONE,
    actor="billing-service",
    action="request.completed",
    request_id=str(REQUEST_ID),
    system=None,
    subject_ref=SUBJECT_REF,
    payload={"kind": "access", "systems": 1},
    prev_hash="3f0a" + HASH[4:],
    hash=HASH,
    event_id=uuid.UUID("0b6f3c1e-8a2d-4e5f-9c7b-1d2e3f4a5b6c"),
)
_CONSENT_IN = ConsentEventIn(
    subject="ada@example.com",
    purpose="newsletter",
    granted=True,
    policy_version="2026-01",
    text_hash="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    source="signup-form",
)
_CONSENT = ConsentEventOut(
    id=uuid.UUID("7c2a1e9b-5f4d-4c3b-a2e1-0f9e8d7c6b5a"),
    subject_ref=SUBJECT_REF,
    purpose="newsletter",
    granted=True,
    policy_version="2026-01",
    text_hash=_CONSENT_IN.text_hash,
    source="signup-form",
    occurred_at=RECEIVED,
    recorded_at=RECEIVED,
    actor="web-frontend",
    audit_seq=None,
    audit_event_id=uuid.UUID("5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"),
)
_POLICY_IN = PolicyIn(
    system="shop",
    name="stale-sessions",
    table="sessions",
    older_than="P90D",
    age_column="last_seen_at",
    filters=[FilterIn(column="revoked", op="eq", value=True)],
    batch_size=1000,
    schedule="P1D",
)
_POLICY = PolicyOut(
    id=POLICY_ID,
    system="shop",
    name="stale-sessions",
    source="api",
    manifest_version=None,
    table="sessions",
    age_column="last_seen_at",
    older_than="P90D",
    action="delete",
    soft_delete_column=None,
    filters=[FilterOut(column="revoked", op="eq", value=True)],
    batch_size=1000,
    schedule="P1D",
    enabled=True,
    next_due_at=datetime(2026, 5, 5, 0, 0, tzinfo=UTC),
    created_at=RECEIVED,
    updated_at=RECEIVED,
)
_RUN = RunOut(
    id=uuid.UUID("c4d5e6f7-0a1b-4c2d-9e3f-4a5b6c7d8e9f"),
    policy_id=POLICY_ID,
    policy_name="stale-sessions",
    system="shop",
    table="sessions",
    action="delete",
    dry_run=True,
    trigger="api",
    actor="ops-console",
    status="completed",
    cutoff=datetime(2026, 2, 3, 9, 30, tzinfo=UTC),
    rows=1250,
    batches=0,
    longest_batch_ms=0,
    attempt=1,
    started_at=RECEIVED,
    finished_at=DONE,
    error=None,
    sql="DELETE FROM sessions WHERE sessions.last_seen_at < :cutoff AND sessions.revoked = :revoked_1",
)
_CHECK = BackupCheck(
    source="shop-nightly",
    kind="directory",
    check="freshness",
    status="ok",
    reason="newest dump is 5 hours old (limit 26 hours)",
    newest_at=datetime(2026, 5, 4, 4, 30, tzinfo=UTC),
    age_seconds=18000.0,
    size_bytes=48_213_504,
)
_RESTORE = RestoreTestOut(
    id=uuid.UUID("e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"),
    system="shop",
    status="passed",
    requested_by="ops-console",
    started_at=RECEIVED,
    finished_at=datetime(2026, 5, 4, 9, 31, 40, tzinfo=UTC),
    dump_name="shop-2026-05-04.dump",
    dump_size=48_213_504,
    dump_modified_at=datetime(2026, 5, 4, 4, 30, tzinfo=UTC),
    scratch_database="lethe_restore_e1f2a3b4",
    scratch_dropped=True,
    restore_exit_code=0,
    tables={"users": 300, "orders": 1187},
    missing_tables=[],
    empty_tables=[],
    resurrected_subjects=0,
    resurrected_refs=[],
    reason=None,
    duration_seconds=100.2,
)

EXAMPLES = (
    BodyExample(
        "access",
        "Access (Art. 15): everything the systems hold about a person",
        RequestIn(kind="access", identities={"email": "ada@example.com"}),
    ),
    BodyExample(
        "erasure-preview",
        "Erasure dry run: stops at the plan",
        RequestIn(kind="erasure", identities={"email": "ada@example.com"}, dry_run=True),
    ),
    BodyExample(
        "rectification",
        "Rectification (Art. 16) of rectifiable columns",
        RequestIn(
            kind="rectification",
            identities={"user_id": "42"},
            changes={"shop": {"users": {"full_name": "Ada King"}}},
        ),
    ),
    BodyExample("completed", "A completed access request", _REQUEST),
    BodyExample(
        "erased",
        "A completed erasure and the recipients told of it (Art. 19)",
        msgspec.structs.replace(
            _REQUEST,
            kind="erasure",
            export_available=False,
            export_expires_at=None,
            recipients=RECIPIENTS,
        ),
    ),
    BodyExample("page", "One page of requests", RequestPage(items=[_REQUEST], next_cursor=None)),
    BodyExample(
        "one-month",
        "One more month, with the reason told to the person",
        ExtensionIn(reason="complex request spanning several systems", months=1),
    ),
    BodyExample(
        "plan",
        "What erasure does in the shop",
        ErasurePlanOut(
            request_id=REQUEST_ID,
            dry_run=True,
            systems=[
                SystemPlanOut(
                    system="shop", found=True, rows=1, blocked=None, tables=[_TABLE_PLAN], source="live"
                )
            ],
        ),
    ),
    BodyExample(
        "registered",
        "A new manifest version",
        Registration(
            created=True,
            version=_VERSION,
            notice="1 column that looks personal is not declared: it would survive erasure",
            risks=[],
            findings=[_FINDING],
        ),
    ),
    BodyExample("latest", "The latest version of the shop's manifest", _VERSION),
    BodyExample("page", "Every system's latest version", ManifestPage(items=[_SUMMARY], next_cursor=None)),
    BodyExample(
        "valid",
        "Still valid against the live target",
        ValidationReport(system="shop", version=3, valid=True, errors=[], risks=[], findings=[_FINDING]),
    ),
    BodyExample("grant", "A newsletter consent given at sign-up", _CONSENT_IN),
    BodyExample("recorded", "The recorded grant", _CONSENT),
    BodyExample(
        "history", "A subject's consent history", ConsentEventPage(items=[_CONSENT], next_cursor=None)
    ),
    BodyExample(
        "granted",
        "Consent in force",
        ConsentStatusOut(
            subject_ref=SUBJECT_REF,
            purpose="newsletter",
            as_of=DONE,
            status="granted",
            granted=True,
            decided_by=_CONSENT.id,
            policy_version="2026-01",
        ),
    ),
    BodyExample("events", "Audit events", AuditEventPage(items=[_EVENT], next_cursor=None)),
    BodyExample(
        "pending",
        "An event committed a moment ago, not linked yet",
        PendingAuditEventPage(
            items=[
                PendingAuditEventOut(
                    event_id=uuid.UUID("9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"),
                    occurred_at=DONE,
                    actor="billing-service",
                    action="consent.granted",
                    request_id=None,
                    system=None,
                    subject_ref=SUBJECT_REF,
                    payload={"purpose": "newsletter", "granted": True},
                )
            ],
            next_cursor=None,
        ),
    ),
    BodyExample(
        "intact",
        "An intact chain",
        ChainVerification(
            ok=True,
            checked=1042,
            head_seq=1042,
            head_hash=HASH,
            broken_seq=None,
            reason=None,
            detail=None,
            checkpoint_seq=None,
            pending=0,
        ),
    ),
    BodyExample(
        "checkpoint",
        "A signed checkpoint to keep outside the database",
        CheckpointOut(
            seq=1042,
            head_hash=HASH,
            time="2026-05-04T09:30:07Z",
            signature="k3JtYmE0c2lnbmF0dXJlLWJhc2U2NC1lZDI1NTE5LWV4YW1wbGU",
            algorithm="HMAC-SHA256",
            public_key=None,
        ),
    ),
    BodyExample("sessions", "Purge revoked sessions after 90 days, daily", _POLICY_IN),
    BodyExample("disable", "Pause a policy", PolicyPatch(enabled=False)),
    BodyExample("policy", "An API policy", _POLICY),
    BodyExample("policies", "Retention policies", PolicyPage(items=[_POLICY], next_cursor=None)),
    BodyExample("dry-run", "A dry run: rows and SQL, nothing deleted", _RUN),
    BodyExample("runs", "Retention runs", RunPage(items=[_RUN], next_cursor=None)),
    BodyExample(
        "healthy",
        "Fresh backups",
        BackupHealthOut(
            status="ok",
            checked_at=DONE,
            systems=[SystemHealthOut(system="shop", status="ok", checks=[_CHECK])],
        ),
    ),
    BodyExample("shop", "Restore the newest dump of the shop", RestoreTestIn(system="shop")),
    BodyExample("passed", "A passed restore test", _RESTORE),
    BodyExample("ok", "The process answers", Health(status="ok")),
    BodyExample(
        "validation",
        "An identity type no manifest declares",
        Problem(
            type="urn:lethe:problem:validation",
            title="Validation failed",
            status=422,
            detail="body.identities.shoe_size: no registered manifest declares this identity",
            instance="/v1/requests",
            errors=[
                ProblemFieldError(
                    field="body.identities.shoe_size",
                    message="no registered manifest declares this identity",
                )
            ],
        ),
    ),
    BodyExample(
        "ready",
        "Store reachable and migrated",
        Readiness(status="ok", store="reachable", revision="0007_backups", head="0007_backups"),
    ),
    *WEBHOOK_EXAMPLES,
    *EXTERNAL_EXAMPLES,
    *RECIPIENT_EXAMPLES,
)
"""Every example, attached by the OpenAPI completion to each body whose struct it is."""
