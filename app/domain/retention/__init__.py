"""Retention policies and purges: policies, runs, the scheduler and its CLI."""

from __future__ import annotations

__all__: tuple[str, ...] = ()
