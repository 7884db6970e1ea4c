"""ORM models of the service store; importing this package registers every table."""

from __future__ import annotations

from app.db.audit import AuditEvent, ConsentEvent, ErasureTombstone
from app.db.backups import BackupRestoreTest
from app.db.erasure import ErasurePlanRecord
from app.db.external import ExternalTask
from app.db.manifests import ManifestVersion
from app.db.models import IdempotencyRecord
from app.db.recipients import RequestRecipient
from app.db.requests import SubjectRequest, SubjectRequestSystem
from app.db.retention import RetentionPolicyRecord, RetentionRun
from app.db.webhooks import WebhookDelivery, WebhookEvent, WebhookSubscription

__all__ = (
    "AuditEvent",
    "BackupRestoreTest",
    "ConsentEvent",
    "ErasurePlanRecord",
    "ErasureTombstone",
    "ExternalTask",
    "IdempotencyRecord",
    "ManifestVersion",
    "RequestRecipient",
    "RetentionPolicyRecord",
    "RetentionRun",
    "SubjectRequest",
    "SubjectRequestSystem",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookSubscription",
)
