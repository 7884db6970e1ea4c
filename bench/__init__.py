"""Benchmarks: each module compares Lethe with a peer or hand-written SQL in one run.

A benchmark module defines ``run() -> str`` returning its Markdown section (starting with a
``##`` heading); ``python -m bench`` runs every module and rewrites that module's section of
``bench/RESULTS.md``, leaving the others as they are.
"""

from __future__ import annotations

__all__: tuple[str, ...] = ()
