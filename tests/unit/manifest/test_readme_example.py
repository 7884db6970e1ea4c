"""The annotated manifest in README.md is a valid manifest."""

from __future__ import annotations

import re
from pathlib import Path

from app.manifest.loading import load_manifest

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_manifest_example_decodes() -> None:
    section = README.read_text(encoding="utf-8").split("## Manifest", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert example is not None
    manifest = load_manifest(example.group(1))
    assert manifest.tables["messages"].links is not None
    assert set(manifest.tables["messages"].links) == {"sender", "recipient"}
    assert manifest.retention_policies[0].filters[0].op == "eq"
