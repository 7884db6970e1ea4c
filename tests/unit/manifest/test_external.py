"""``kind: external`` manifests: decoding, the README example, and due times."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.lib.errors import ManifestInvalid
from app.manifest.durations import parse_duration
from app.manifest.external import ExternalSystem, load_any
from app.manifest.model import Manifest

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_external_example_decodes() -> None:
    section = README.read_text(encoding="utf-8").split("## External systems", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert example is not None
    system = load_any(example.group(1))
    assert isinstance(system, ExternalSystem)
    assert system.webhook == uuid.UUID("7c2a9e14-5b3d-4f61-8a0e-2d4c6b8f1a35")
    assert system.identities == ("email",)


def test_a_database_manifest_still_decodes_as_one() -> None:
    section = README.read_text(encoding="utf-8").split("## Manifest", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert example is not None
    assert isinstance(load_any(example.group(1)), Manifest)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("kind: external\nsystem: m\npurpose: p\nidentities: [email]\n", "legal_basis"),
        ("kind: external\nsystem: m\npurpose: p\nlegal_basis: b\nidentities: []\n", "identities"),
        ("kind: external\nsystem: m\npurpose: p\nlegal_basis: b\nidentities: [e]\ntables: {}\n", "tables"),
        ("kind: external\nsystem: m\npurpose: p\nlegal_basis: b\nidentities: [e]\nnotify: email\n", "notify"),
        (
            "kind: external\nsystem: m\npurpose: p\nlegal_basis: b\nidentities: [e]\ndue: P9999999999999D\n",
            "due",
        ),
    ],
)
def test_errors_name_the_field(text: str, field: str) -> None:
    with pytest.raises(ManifestInvalid) as raised:
        load_any(text)
    assert raised.value.extra["errors"][0]["field"] == field


def test_due_after_is_calendar_aware() -> None:
    assert parse_duration("P1M").after(datetime(2026, 1, 31, 9, tzinfo=UTC)) == datetime(
        2026, 2, 28, 9, tzinfo=UTC
    )
    assert parse_duration("P7DT12H").after(datetime(2026, 5, 1, tzinfo=UTC)) == datetime(
        2026, 5, 8, 12, tzinfo=UTC
    )
