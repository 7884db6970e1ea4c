"""``make demo``: store, shop target database, token, curl lines, and a server on localhost."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.config import Settings
from app.db.store import create_store_engine, upgrade_store
from app.demo.shop import create_shop
from app.lib.auth import ALL_SCOPES, mint_token

__all__ = ("DemoInfo", "prepare_demo", "serve_demo")

DEMO_PERSON = "ada.lovelace.1@example.com"


@dataclass
class DemoInfo:
    """What the demo prints: a token valid for every scope and the target it created."""

    token: str
    shop_path: Path
    people: int

    def banner(self, host: str, port: int) -> str:
        """Instructions a newcomer can paste."""
        base = f"http://{host}:{port}"
        return "\n".join(
            [
                "",
                f"Lethe demo: store migrated, shop target with {self.people} people at {self.shop_path}",
                "",
                "Development token (all scopes, valid 12 hours):",
                f"  export TOKEN={self.token}",
                "",
                "Try:",
                f"  curl -s {base}/healthz",
                f"  curl -s -i {base}/v1/audit/events            # 401 without a token",
                f'  curl -s -H "Authorization: Bearer $TOKEN" {base}/readyz',
                f"  open {base}/schema for the API documentation",
                "",
            ]
        )


async def prepare_demo(settings: Settings, home: Path) -> DemoInfo:
    """Migrate the embedded store and (re)create the demo shop database."""
    engine = create_store_engine(settings)
    try:
        await upgrade_store(engine)
    finally:
        await engine.dispose()
    shop_path = home / "shop.db"
    people = create_shop(shop_path)
    token = mint_token(
        settings,
        sub="demo-operator",
        scopes=list(ALL_SCOPES),
        ttl_seconds=12 * 3600,
        client_id="demo",
    )
    return DemoInfo(token=token, shop_path=shop_path, people=people)


def serve_demo(settings: Settings, host: str, port: int) -> None:
    """Serve the app with uvicorn in this process."""
    import uvicorn

    from app.asgi import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_config=None)
