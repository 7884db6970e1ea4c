"""A live Lethe on loopback for the contract tests (schemathesis, the generated client)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.contract.live import LiveServer, serve


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Lethe with workers on, a migrated SQLite store and a 30-person demo shop."""
    with serve(tmp_path_factory.mktemp("live")) as server:
        yield server
