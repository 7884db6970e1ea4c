"""The manifest registry: one immutable row per registered version of a system's manifest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from advanced_alchemy.base import DefaultBase
from advanced_alchemy.types import DateTimeUTC, JsonB
from sqlalchemy import Integer, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

__all__ = ("ManifestVersion",)


class ManifestVersion(DefaultBase):
    """Version ``version`` of the manifest of ``system``.

    Rows are only ever inserted: registering a changed manifest adds ``version + 1``, an
    unchanged one (same ``content_hash`` as the latest) adds nothing. Requests record the version
    they ran on, so a row must never change once written.
    """

    __tablename__ = "manifest_version"
    __table_args__ = (PrimaryKeyConstraint("system", "version", name="pk_manifest_version"),)

    system: Mapped[str] = mapped_column(String(63))
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict[str, Any]] = mapped_column(JsonB)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    created_by: Mapped[str] = mapped_column(String(255))
    identity_columns: Mapped[dict[str, Any] | None] = mapped_column(JsonB, nullable=True)
    """Per identity, its column's reflected type (``affinity``, ``type_name``, ``length``), taken
    when the version was validated live; None when it was not (``LETHE_MANIFESTS_DIR``)."""
