"""The consent ledger: immutable grant and withdrawal events, status derived from them."""

from __future__ import annotations

__all__: tuple[str, ...] = ()
