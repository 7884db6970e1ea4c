"""Erasure plans as recorded when an erasure request ran (dry run or before execution)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ("ErasurePlanRecord",)


class ErasurePlanRecord(DefaultBase):
    """The plan of one system of an erasure request.

    It holds strategies, counts, table and column names and SQL with the subject key as a
    placeholder: nothing personal, so it outlives the request's encrypted identities and
    ``GET /v1/requests/{id}/plan`` can still answer after a dry run completed.
    """

    __tablename__ = "erasure_plan"
    __table_args__ = (Index("ix_erasure_plan_request_system", "request_id", "system"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    request_id: Mapped[str] = mapped_column(String(128))
    system: Mapped[str] = mapped_column(String(128))
    attempt: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    plan: Mapped[dict[str, Any]] = mapped_column(JsonB)
