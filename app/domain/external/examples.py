"""Examples of the external task bodies shown in the OpenAPI document."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from app.domain.external.schemas import TaskCompleteIn, TaskFailIn, TaskIdentitiesOut, TaskOut
from app.lib.schema import BodyExample

__all__ = ("EXTERNAL_EXAMPLES",)

TASK_ID = uuid.UUID("5d1e7a42-8c3b-4f90-a6e2-1b3c5d7e9f02")
REQUEST_ID = uuid.UUID("0b9f4c7e-3a53-4f4e-9d0b-7d2f0a6c1e42")

EXTERNAL_EXAMPLES = (
    BodyExample(
        "done",
        "The mail provider removed one contact; its ticket is the evidence",
        TaskCompleteIn(counts={"contacts": 1}, evidence="MAIL-4711"),
    ),
    BodyExample(
        "export_part",
        "Access: the mail provider's part of the subject's export",
        TaskCompleteIn(
            counts={"contacts": 1},
            export_part={"contacts": [{"email": "ada@example.com", "lists": ["news"], "opted_in": True}]},
        ),
    ),
    BodyExample(
        "failed", "The system could not act", TaskFailIn(reason="the account is locked by a legal hold")
    ),
    BodyExample(
        "completed",
        "The task as reported",
        TaskOut(
            id=TASK_ID,
            system="mailer",
            manifest_version=1,
            status="completed",
            notify="webhook",
            due_at=datetime(2026, 5, 11, 9, 30, tzinfo=UTC),
            overdue=False,
            identities_read=True,
            opened_at=datetime(2026, 5, 4, 9, 30, tzinfo=UTC),
            counts={"contacts": 1},
            evidence="MAIL-4711",
            error=None,
            updated_at=datetime(2026, 5, 5, 14, 2, tzinfo=UTC),
        ),
    ),
    BodyExample(
        "rectification",
        "A rectification: the identities and the new values this system must write (once)",
        TaskIdentitiesOut(
            task_id=TASK_ID,
            request_id=REQUEST_ID,
            system="mailer",
            kind="rectification",
            identities={"email": "ada@example.com"},
            tenant=None,
            changes={"contact": {"email": "ada.lovelace@example.org"}},
        ),
    ),
    BodyExample(
        "identities",
        "What the mail provider needs to find the subject (once)",
        TaskIdentitiesOut(
            task_id=TASK_ID,
            request_id=REQUEST_ID,
            system="mailer",
            kind="erasure",
            identities={"email": "ada@example.com"},
            tenant=None,
        ),
    ),
)
"""Attached by the OpenAPI completion to each body whose struct it is."""
