"""Bodies of the Art. 19 recipients of a request."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.lib.schema import BaseStruct, InputStruct

__all__ = ("RecipientNotifiedIn", "RecipientOut", "RecipientStatus")

RecipientStatus = Literal["pending", "notified", "failed", "manual"]
"""``notified``: a ``recipient.notice`` webhook was delivered to the recipient's client, or an
operator recorded telling them; ``pending``: the webhook waits for its next try; ``failed``: its
retries ran out (redeliver it, or tell the recipient by hand and record it); ``manual``: the
recipient has no subscription, someone must tell them and record it."""


class RecipientOut(BaseStruct):
    """One recipient the manifests name for what a completed rectification or erasure changed."""

    name: str
    status: RecipientStatus
    via: Literal["webhook", "manual"] | None
    """How the recipient was told (None: not yet)."""
    tables: dict[str, dict[str, int]]
    """What changed that the recipient received: system -> table -> rows."""
    categories: list[str]
    notified_at: datetime | None
    evidence: str | None
    """The reference recorded with a notification made by hand (a ticket id, a letter's number)."""


class RecipientNotifiedIn(InputStruct):
    """A notification made by hand, with a reference to its proof (never personal data)."""

    evidence: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | None = None
