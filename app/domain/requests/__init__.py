"""Data-subject requests: lifecycle, deadlines, workers."""

from __future__ import annotations

__all__: tuple[str, ...] = ()
