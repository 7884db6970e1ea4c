"""``python -m app`` and the ``lethe`` console script."""

from __future__ import annotations

__all__ = ("main",)


def main() -> None:
    """Run the ``lethe`` command line."""
    from app.cli import run

    run()


if __name__ == "__main__":
    main()
