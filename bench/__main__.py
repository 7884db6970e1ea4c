"""``python -m bench [MODULE ...]``: run the benchmarks and update their sections of RESULTS.md."""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from pathlib import Path

import bench

__all__ = ("main", "update_section")

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nRegenerate with `make bench` (or `python -m bench MODULE`).\n"


def _modules() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")
    )


def update_section(document: str, name: str, section: str) -> str:
    """Replace (or append) the block between ``<!-- bench:NAME -->`` markers."""
    block = f"<!-- bench:{name} -->\n{section.strip()}\n<!-- /bench:{name} -->"
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S
    )
    if pattern.search(document):
        return pattern.sub(lambda _: block, document)
    return f"{document.rstrip()}\n\n{block}\n"


def main(argv: list[str]) -> int:
    """Run the named modules (default: all) and write their sections."""
    names = argv or _modules()
    unknown = sorted(set(names) - set(_modules()))
    if unknown:
        print(f"unknown benchmark modules: {', '.join(unknown)}", file=sys.stderr)
        return 2
    document = RESULTS.read_text() if RESULTS.exists() else HEADER
    for name in names:
        print(f"== bench.{name}", flush=True)
        section = importlib.import_module(f"bench.{name}").run()
        print(section, flush=True)
        document = update_section(document, name, section)
        RESULTS.write_text(document)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
