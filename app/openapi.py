"""Render the OpenAPI document the app serves at ``/schema/openapi.json`` (``make openapi``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from app.config import load_settings

__all__ = ("render_openapi",)

# Generating the contract must not need real secrets or a store: these values only satisfy the
# start-up checks and never leave this function.
_SPEC_ENV = {
    "LETHE_JWT_SECRET": "openapi-generation-placeholder-secret-000",
    "LETHE_AUDIT_KEY": "openapi-generation-placeholder-audit-key-0",
    "LETHE_AUDIT_CHAIN_KEY": "openapi-generation-placeholder-chain-key-0",
    "LETHE_DATABASE_URL": "sqlite+aiosqlite:///:memory:",
    "LETHE_WORKERS_ENABLED": "false",
}


def render_openapi() -> str:
    """The spec as stable, sorted, indented JSON."""
    from app.asgi import create_app

    app = create_app(load_settings(_SPEC_ENV))
    schema: dict[str, Any] = app.openapi_schema.to_schema()
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "openapi/openapi.json")
    target.write_text(render_openapi(), encoding="utf-8")
