"""Benchmarks against peers and hand-written SQL; results in bench/RESULTS.md."""
