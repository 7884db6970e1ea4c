"""The docs page rendered by headless Chromium with every host but loopback unreachable.

``make docs-screenshot`` writes ``.lethe/docs.png`` (outside version control) for reviewers;
the contract tests use the same rendering to check that the page draws without the internet.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.integration.contract.live import serve

__all__ = ("render_docs",)

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--virtual-time-budget=15000",
    "--window-size=1400,2200",
)


def render_docs(chromium: str, home: Path, screenshot: Path | None) -> str:
    """Serve Lethe under ``home``, load ``/schema``; return the rendered DOM (and save a PNG)."""
    with serve(home, people=5) as server:
        url = f"{server.base_url}/schema"
        profile = ["--user-data-dir=" + str(home / "chromium-profile")]
        dom = subprocess.run(
            [chromium, *FLAGS, *profile, "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [chromium, *FLAGS, *profile, f"--screenshot={screenshot.resolve()}", url],
                capture_output=True,
                timeout=120,
                check=True,
            )
    return dom


if __name__ == "__main__":
    found = shutil.which("chromium")
    if found is None:
        sys.exit("chromium is not installed: apt-get install chromium")
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".lethe/docs.png")
    with tempfile.TemporaryDirectory() as scratch:
        render_docs(found, Path(scratch), target)
    sys.stdout.write(f"{target}\n")
