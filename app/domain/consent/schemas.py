"""Bodies of the consent endpoints.

A subject is named by ``subject_type`` (default ``email``) and ``subject`` (the value); Lethe
stores and returns only its pseudonymous reference (``subject_ref``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from app.lib.schema import BaseStruct, InputStruct

__all__ = ("ConsentEventIn", "ConsentEventOut", "ConsentEventPage", "ConsentState", "ConsentStatusOut")

Identifier = Annotated[
    str,
    msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="letters, digits and _ . : - (1-128)"),
]
IdentityType = Annotated[
    str,
    msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="identity type, e.g. email or user_id"),
]
IdentityValue = Annotated[str, msgspec.Meta(min_length=1, max_length=320)]
Sha256Hex = Annotated[
    str,
    msgspec.Meta(pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of the consent text shown"),
]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
ConsentState = Literal["granted", "withdrawn", "unknown"]
"""``unknown``: no event for the purpose at that time."""


class ConsentEventIn(InputStruct):
    """One grant (``granted: true``) or withdrawal (``granted: false``) of consent for a purpose."""

    subject: IdentityValue
    purpose: Identifier
    granted: bool
    policy_version: Identifier
    text_hash: Sha256Hex
    source: Identifier
    subject_type: IdentityType = "email"
    occurred_at: AwareDatetime | None = None


class ConsentEventOut(BaseStruct):
    """A recorded consent event; the identity is only present as ``subject_ref``."""

    id: UUID
    subject_ref: str
    purpose: str
    granted: bool
    policy_version: str
    text_hash: str
    source: str
    occurred_at: datetime
    recorded_at: datetime
    actor: str
    audit_seq: int | None = None
    """The ``seq`` of the audit event mirroring this one; null while that event is pending (the
    sequencer links it shortly after the commit: find it by ``audit_event_id``)."""
    audit_event_id: UUID | None = None
    """The ``event_id`` of the audit event mirroring this one (set when it was recorded)."""


class ConsentEventPage(BaseStruct):
    """A page of a subject's consent history, oldest first."""

    items: list[ConsentEventOut]
    next_cursor: str | None


class ConsentStatusOut(BaseStruct):
    """Consent for one purpose at ``as_of``: the newest event at or before it decides."""

    subject_ref: str
    purpose: str
    as_of: datetime
    status: ConsentState
    """``granted``, ``withdrawn`` or ``unknown`` (no event yet)."""
    granted: bool
    decided_by: UUID | None
    policy_version: str | None
