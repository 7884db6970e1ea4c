"""ORM models of the service store; importing this package registers every table."""

from __future__ import annotations

from app.db.audit import AuditEvent, ConsentEvent, ErasureTombstone
from app.db.backups import BackupRestoreTest
from app.db.manifests import ManifestVersion
from app.db.models import IdempotencyRecord

__all__ = (
    "AuditEvent",
    "BackupRestoreTest",
    "ConsentEvent",
    "ErasureTombstone",
    "IdempotencyRecord",
    "ManifestVersion",
)
