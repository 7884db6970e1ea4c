"""Which variables, files and URLs a manifest may use to reach a target."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.targets import TargetSources, async_url
from app.lib.errors import TargetRefused
from app.manifest.model import Connection

STORE = "postgresql+asyncpg://lethe:pw@127.0.0.1/lethe"


@pytest.mark.parametrize(
    ("target", "same"),
    [
        ("postgresql://other:pw@localhost:5432/lethe", True),
        ("postgresql://lethe@127.0.0.1/shop", False),
        ("postgresql://lethe@127.0.0.1:5433/lethe", False),
        ("postgresql://lethe@db.internal/lethe", False),
        ("mysql://root@127.0.0.1:3306/lethe", False),
    ],
)
def test_a_url_reaching_the_store_database_is_refused(target: str, same: bool) -> None:
    sources = TargetSources(store_url=STORE)
    if same:
        with pytest.raises(TargetRefused):
            sources.check_url("shop", async_url(target))
    else:
        sources.check_url("shop", async_url(target))


def test_the_same_sqlite_file_spelt_differently_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sources = TargetSources(store_url="sqlite+aiosqlite:///./store.db")
    with pytest.raises(TargetRefused):
        sources.check_url("shop", async_url(f"sqlite:///{tmp_path}/sub/../store.db"))
    sources.check_url("shop", async_url(f"sqlite:///{tmp_path}/shop.db"))


def test_only_operator_named_variables_and_files() -> None:
    sources = TargetSources(
        variables=frozenset({"CRM_DSN"}),
        files=("/run/targets/",),
        refused_variables=frozenset({"LETHE_DATABASE_URL"}),
    )
    for allowed in (
        Connection(env="LETHE_TARGET_SHOP_URL"),
        Connection(env="CRM_DSN"),
        Connection(file="/run/targets/a"),
    ):
        sources.check_reference("shop", allowed)
    for refused in (
        Connection(env="LETHE_DATABASE_URL"),
        Connection(env="AWS_SECRET_ACCESS_KEY"),
        Connection(file="/run/targets/../secrets/jwt"),
        Connection(file="/etc/passwd"),
    ):
        with pytest.raises(TargetRefused):
            sources.check_reference("shop", refused)
