"""The hash-chained, append-only audit log: appends, verification, signed checkpoints."""

from __future__ import annotations

__all__: tuple[str, ...] = ()
