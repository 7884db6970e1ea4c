"""Request kinds: named once for the store, the API and the settings (importable without the ORM)."""

from __future__ import annotations

__all__ = ("REQUEST_KINDS",)

REQUEST_KINDS = ("access", "erasure", "rectification")
"""Rights a data-subject request exercises: Art. 15/20, Art. 17, Art. 16."""
