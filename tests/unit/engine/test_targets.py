"""Target URLs: libpq ``options`` become asyncpg server settings, or are refused clearly."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from app.engine.targets import asyncpg_server_settings, resolve_url
from app.lib.errors import TargetUnavailable
from app.manifest.model import Connection


@pytest.mark.parametrize(
    ("options", "settings"),
    [
        ("-csearch_path%3Dapp,billing", {"search_path": "app,billing"}),
        (
            "-c%20search_path%3Dapp%20-c%20statement_timeout%3D5000",
            {"search_path": "app", "statement_timeout": "5000"},
        ),
        ("--search-path%3Dapp", {"search_path": "app"}),
    ],
)
def test_libpq_options_become_server_settings(options: str, settings: dict[str, str]) -> None:
    url = make_url(f"postgresql+asyncpg://u@h/db?options={options}&ssl=require")
    cleaned, found = asyncpg_server_settings(url)
    assert found == settings
    assert "options" not in cleaned.query
    assert cleaned.query["ssl"] == "require"


def test_urls_without_options_and_other_databases_are_left_alone() -> None:
    url = make_url("mysql+asyncmy://u@h/db?options=-cx%3Dy")
    assert asyncpg_server_settings(url) == (url, {})
    plain = make_url("postgresql+asyncpg://u@h/db")
    assert asyncpg_server_settings(plain) == (plain, {})


@pytest.mark.parametrize("options", ["--verbose", "-c", "-x%20y", "search_path"])
def test_other_options_are_refused_naming_the_variable_not_the_url(options: str) -> None:
    environ = {"CRM_URL": f"postgresql://user:secret@h/db?options={options}"}
    with pytest.raises(TargetUnavailable) as caught:
        resolve_url("crm", Connection(env="CRM_URL"), environ)
    assert "CRM_URL" in caught.value.detail
    assert "-c name=value" in caught.value.detail
    assert "secret" not in caught.value.detail
