"""Run every benchmark (``make bench``)."""

from __future__ import annotations

if __name__ == "__main__":
    print("No benchmark exists yet.")
