"""``lethe manifest scaffold`` and ``lethe manifest lint`` on the demo shop database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Settings
from app.demo.shop import create_shop
from app.engine.targets import TargetRegistry
from app.manifest.lint import lint
from app.manifest.loading import load_manifest
from app.manifest.model import Connection
from app.manifest.validation import validate

ROOT = Path(__file__).resolve().parents[3]


def _lethe(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
    return subprocess.run(
        [sys.executable, "-m", "app", "manifest", *args],
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A fresh demo shop database."""
    path = tmp_path / "shop.db"
    create_shop(path, people=10)
    return path


@pytest.fixture
def scaffolded(shop: Path, tmp_path: Path) -> str:
    """The draft manifest ``lethe manifest scaffold`` writes for the shop."""
    result = _lethe("scaffold", f"sqlite:///{shop}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_scaffold_of_the_demo_validates_and_lints_clean(scaffolded: str, shop: Path) -> None:
    manifest = load_manifest(scaffolded)
    assert manifest.system == "shop"
    assert manifest.connection.env == "LETHE_TARGET_SHOP_URL"
    assert (manifest.subject.table, manifest.subject.key_columns) == ("users", ("id",))
    assert {n: manifest.subject.identity(n).column for n in manifest.subject.identities} == {
        "user_id": "id",
        "email": "email",
    }
    assert set(manifest.tables) == {"users", "addresses", "orders", "order_items", "comments", "sessions"}
    orders = manifest.tables["orders"]
    assert orders.link is not None  # two FK paths (direct and via addresses): written out
    assert [h.to for h in orders.link.path] == ["users"]
    assert manifest.tables["order_items"].link is None  # derived
    guessed = {(t, c): s.category for t, spec in manifest.tables.items() for c, s in spec.columns.items()}
    assert guessed[("users", "email")] == "user.contact.email"
    assert guessed[("users", "phone")] == "user.contact.phone_number"
    assert guessed[("users", "birth_date")] == "user.demographic.date_of_birth"
    assert guessed[("sessions", "ip_address")] == "user.device.ip_address"
    assert ("orders", "total_cents") not in guessed
    assert "# 2 foreign-key paths reach the subject" in scaffolded

    targets = TargetRegistry(Settings(), {"SHOP": f"sqlite+aiosqlite:///{shop}"})
    schema = await targets.reflect("shop", Connection(env="SHOP"))
    await targets.dispose()
    graph, issues = validate(manifest, schema)
    assert issues == []
    assert graph is not None
    # tables other tables reference are kept (anonymized): orders may be retained by law and
    # point at the user and the address; leaves are deleted
    strategies = {name: spec.strategy for name, spec in manifest.tables.items()}
    assert strategies == {
        "users": "anonymize",
        "addresses": "anonymize",
        "orders": "anonymize",
        "order_items": "delete",
        "comments": "delete",
        "sessions": "delete",
    }
    assert set(graph.deletion_order) == {"order_items", "comments", "sessions"}
    assert lint(manifest, schema) == []


def test_lint_fails_on_unacknowledged_findings_and_names_them(
    scaffolded: str, shop: Path, tmp_path: Path
) -> None:
    partial = scaffolded.replace("      phone: {category: user.contact.phone_number", "      # phone: {")
    path = tmp_path / "shop.yaml"
    path.write_text(partial, encoding="utf-8")
    env = {"LETHE_TARGET_SHOP_URL": f"sqlite:///{shop}"}
    result = _lethe("lint", str(path), cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "tables.users.columns.phone: column 'users.phone' looks like a phone number" in result.stdout
    assert result.stdout.count("\n") == 1  # nothing else is flagged

    path.write_text(
        partial + "ignore:\n  - {table: users, column: phone, reason: kept for fraud checks}\n",
        encoding="utf-8",
    )
    acknowledged = _lethe("lint", str(path), cwd=tmp_path, env=env)
    assert acknowledged.returncode == 0, acknowledged.stdout
    assert "finding (acknowledged)" in acknowledged.stdout


def test_lint_reports_validation_errors_and_unreachable_targets(shop: Path, tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(
        (ROOT / "app/demo/manifest.yaml").read_text().replace("delivery_note:", "note:"), encoding="utf-8"
    )
    result = _lethe("lint", str(path), "--url", f"sqlite:///{shop}", cwd=tmp_path)
    assert result.returncode == 1
    assert "error" in result.stdout
    assert "column 'orders.note' does not exist" in result.stdout
    down = _lethe("lint", str(path), cwd=tmp_path)
    assert down.returncode == 1
    assert "LETHE_TARGET_SHOP_URL is not set" in down.stderr


def test_lint_strict_lists_uncovered_personal_columns_as_errors(shop: Path, tmp_path: Path) -> None:
    demo = (ROOT / "app/demo/manifest.yaml").read_text()
    path = tmp_path / "shop.yaml"
    path.write_text(demo.replace("      phone: {category: user.contact.phone_number", "      # phone: {"))
    env = {"LETHE_TARGET_SHOP_URL": f"sqlite:///{shop}"}
    relaxed = _lethe("lint", str(path), cwd=tmp_path, env=env)
    assert relaxed.stdout.startswith("finding ")
    strict = _lethe("lint", "--strict", str(path), cwd=tmp_path, env=env)
    assert strict.returncode == 1
    assert strict.stdout.startswith("error ")
    assert "tables.users.columns.phone: column 'users.phone' looks like a phone number" in strict.stdout
    assert "strict mode" in strict.stdout
    from_env = _lethe("lint", str(path), cwd=tmp_path, env={**env, "LETHE_MANIFEST_STRICT": "true"})
    assert from_env.stdout == strict.stdout
