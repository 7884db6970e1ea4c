"""``make demo``: store, shop target database, token, curl lines, and a server on localhost."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import async_sessionmaker

from app.config import Settings
from app.db.store import create_store_engine, upgrade_store
from app.demo.shop import create_shop
from app.domain.manifests.services import ManifestService, register_manifest
from app.engine.targets import TargetRegistry
from app.lib.auth import ALL_SCOPES, mint_token
from app.manifest.loading import load_manifest_file

__all__ = (
    "DEMO_MANIFEST",
    "SHOP_URL_VARIABLE",
    "DemoInfo",
    "prepare_demo",
    "register_demo_manifest",
    "serve_demo",
)

DEMO_MANIFEST = Path(__file__).with_name("manifest.yaml")
"""The shop's manifest, registered by the demo."""
SHOP_URL_VARIABLE = "LETHE_TARGET_SHOP_URL"
"""The variable the shop manifest's connection names."""

SERVICE_SCOPES = (
    "requests:read",
    "requests:write",
    "consent:read",
    "consent:write",
    "webhooks:read",
    "webhooks:write",
)
"""What an ordinary calling service holds: its own requests, consents and webhooks, nothing else."""
OPERATOR_SCOPES = tuple(s for s in ALL_SCOPES if s not in ("requests:write", "consent:write"))
"""The operator's scopes: manifests, retention, backups, audit, every client's requests."""

DEMO_PERSON = "radia.hamilton.1@example.com"
"""Person 1 of the generated shop (seed 7): the subject of the demo requests."""


@dataclass
class DemoInfo:
    """What the demo prints: a calling service's token, an operator's token, the target created."""

    token: str
    operator_token: str
    shop_path: Path
    people: int
    manifest_version: int = 0

    def banner(self, host: str, port: int) -> str:
        """Instructions a newcomer can paste."""
        base = f"http://{host}:{port}"
        return "\n".join(
            [
                "",
                f"Lethe demo: store migrated, shop target with {self.people} people at {self.shop_path}",
                f"Manifest of system 'shop' registered (version {self.manifest_version})",
                "",
                "Development tokens (valid 12 hours):",
                f"  export TOKEN={self.token}",
                f"    # a calling service: {' '.join(SERVICE_SCOPES)}",
                f"  export OPERATOR_TOKEN={self.operator_token}",
                "    # the operator: manifests, audit, retention, backups, approvals, all requests",
                "",
                "Try:",
                f"  curl -s {base}/healthz",
                f"  curl -s -i {base}/v1/audit/events            # 401 without a token",
                f'  curl -s -H "Authorization: Bearer $OPERATOR_TOKEN" {base}/v1/audit/events',
                f'  curl -s -H "Authorization: Bearer $OPERATOR_TOKEN" {base}/v1/manifests/shop',
                f"  open {base}/schema for the API documentation",
                "",
                *_export_lines(base),
                *_erasure_lines(base),
            ]
        )


def _export_lines(base: str) -> list[str]:
    """curl lines that export the demo person's data (Art. 15) and download it."""
    auth = '-H "Authorization: Bearer $TOKEN"'
    body = f'{{"kind": "access", "identities": {{"email": "{DEMO_PERSON}"}}}}'
    pick_id = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])'"
    return [
        f"Export everything the shop holds about {DEMO_PERSON} (the worker runs it in seconds):",
        f"  REQUEST=$(curl -s {auth} -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-export-1' "
        f"-d '{body}' {base}/v1/requests | {pick_id})",
        f"  curl -s {auth} {base}/v1/requests/$REQUEST          # status, per-system counts",
        f'  curl -s {auth} "{base}/v1/requests/$REQUEST/export?format=json"',
        f'  curl -s {auth} -o export.zip "{base}/v1/requests/$REQUEST/export?format=zip"',
        "",
    ]


def _erasure_lines(base: str) -> list[str]:
    """curl lines that preview (dry run, plan) and then execute the erasure of the demo person."""
    auth = '-H "Authorization: Bearer $TOKEN"'
    json_type = "-H 'Content-Type: application/json'"
    preview = f'{{"kind": "erasure", "identities": {{"email": "{DEMO_PERSON}"}}, "dry_run": true}}'
    erase = f'{{"kind": "erasure", "identities": {{"email": "{DEMO_PERSON}"}}}}'
    pick_id = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])'"
    return [
        f"Preview the erasure of {DEMO_PERSON} (a dry run stops at the plan: strategy, rows, SQL):",
        f"  PREVIEW=$(curl -s {auth} {json_type} -H 'Idempotency-Key: demo-erasure-preview-1' "
        f"-d '{preview}' {base}/v1/requests | {pick_id})",
        f"  curl -s {auth} {base}/v1/requests/$PREVIEW/plan",
        "Then erase them (the plan is recorded; the audit log gets the verification counts):",
        f"  ERASURE=$(curl -s {auth} {json_type} -H 'Idempotency-Key: demo-erasure-1' "
        f"-d '{erase}' {base}/v1/requests | {pick_id})",
        f"  curl -s {auth} {base}/v1/requests/$ERASURE          # completed, rows per table",
        f"  curl -s {auth} {base}/v1/requests/$ERASURE/plan",
        "",
    ]


async def prepare_demo(settings: Settings, home: Path) -> DemoInfo:
    """Migrate the embedded store and (re)create the demo shop database."""
    engine = create_store_engine(settings)
    try:
        await upgrade_store(engine)
    finally:
        await engine.dispose()
    shop_path = home / "shop.db"
    people = create_shop(shop_path)
    os.environ.setdefault(SHOP_URL_VARIABLE, f"sqlite+aiosqlite:///{shop_path.resolve()}")
    version = await register_demo_manifest(settings)
    token = mint_token(
        settings,
        sub="demo-service",
        scopes=list(SERVICE_SCOPES),
        ttl_seconds=12 * 3600,
        client_id="demo-service",
    )
    operator = mint_token(
        settings,
        sub="demo-operator",
        scopes=list(OPERATOR_SCOPES),
        ttl_seconds=12 * 3600,
        client_id="demo-operator",
    )
    return DemoInfo(
        token=token, operator_token=operator, shop_path=shop_path, people=people, manifest_version=version
    )


async def register_demo_manifest(settings: Settings) -> int:
    """Validate the shop manifest against the shop database and register it; returns the version.

    Re-running the demo with the same manifest keeps the existing version.
    """
    manifest = load_manifest_file(DEMO_MANIFEST)
    engine = create_store_engine(settings)
    targets = TargetRegistry(settings)
    try:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions() as session, session.begin():
            service = ManifestService(session=session)
            row, _, _ = await register_manifest(service, manifest, targets, created_by="demo")
            return row.version
    finally:
        await targets.dispose()
        await engine.dispose()


def serve_demo(settings: Settings, host: str, port: int) -> None:
    """Serve the app in this process, exactly as ``lethe run`` does."""
    from app.server import serve

    serve(settings, host, port)
