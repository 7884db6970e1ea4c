"""Request bodies must say they are JSON (or YAML where a manifest is sent): 415 otherwise."""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from app.lib.errors import UnsupportedMediaType

__all__ = ("JSON_TYPES", "YAML_TYPES", "MediaTypeMiddleware")

JSON_TYPES = frozenset({"application/json"})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
YAML_PATHS = ("/v1/manifests",)
"""Where YAML bodies are accepted (manifest registration and validation)."""
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _accepted(media_type: str, path: str) -> bool:
    if media_type in JSON_TYPES or (media_type.startswith("application/") and media_type.endswith("+json")):
        return True
    return media_type in YAML_TYPES and path.startswith(YAML_PATHS)


class MediaTypeMiddleware:
    """Refuses a body whose ``Content-Type`` is declared and is not JSON (or YAML for manifests).

    Without this a ``text/plain`` or form body would be decoded as JSON all the same. A body
    without a ``Content-Type`` is read as JSON, as before.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["method"] in _BODY_METHODS:
            headers = dict(scope["headers"])
            declared = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
            if declared and not _accepted(declared, scope["path"]):
                raise UnsupportedMediaType(
                    f"Content-Type {declared[:64]} is not accepted; send application/json"
                    + (" or application/yaml" if scope["path"].startswith(YAML_PATHS) else "")
                )
        await self.app(scope, receive, send)
