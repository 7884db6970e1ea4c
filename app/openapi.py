"""The OpenAPI contract: config, offline docs, what handlers cannot say, and ``make openapi``.

Litestar infers paths, parameters and bodies from the handlers. What it cannot infer is added
here, once, from the code itself: the scope each guard requires, problem+json for Litestar's own
400s, ``Retry-After`` on 429s, ``Idempotent-Replayed`` wherever an ``Idempotency-Key`` is taken,
the configured page-size maximum, and the examples each domain declares next to its structs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Router
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, OAuthFlow, OAuthFlows, SecurityScheme, Tag
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from app import __version__
from app.config import Settings, load_settings
from app.lib.auth import ALL_SCOPES, REQUIRED_SCOPE
from app.lib.schema import BaseStruct, BodyExample, InputStruct

__all__ = ("DOCS_ASSETS_PATH", "complete_openapi", "docs_assets_router", "openapi_config", "render_openapi")

DOCS_ASSETS_PATH = "/schema/assets"
"""Swagger UI's files, served from the pinned ``swagger-ui-bundle-v2`` package (no CDN)."""
INTRODUCTION = Path(__file__).with_name("openapi_introduction.md")
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_MEDIA_TYPE = "application/problem+json"
TOKEN_URL = "https://idp.example.com/oauth2/token"  # noqa: S105 - a URL, not a secret

_SCOPE_TEXT = {
    "requests:read": "Read data-subject requests, their erasure plans and access exports",
    "requests:write": "Submit, cancel and extend data-subject requests",
    "requests:approve": "Approve or reject requests held for approval",
    "requests:admin": "See and decide the requests of every calling client",
    "consent:read": "Read consent status and history",
    "consent:write": "Record consent grants and withdrawals",
    "audit:read": "Read the audit log, verify its chain, take signed checkpoints",
    "manifests:read": "Read and re-validate registered manifests",
    "manifests:write": "Register manifest versions",
    "retention:read": "Read retention policies and runs",
    "retention:write": "Create, change and delete API retention policies",
    "retention:run": "Run retention policies on demand (dry or real)",
    "backups:read": "Read backup health and restore tests",
    "backups:run": "Start restore tests",
}
SCOPES = {scope: _SCOPE_TEXT.get(scope, scope) for scope in ALL_SCOPES}
"""Every scope a token can carry, with what it allows."""
TAGS = (
    Tag(name="requests", description="Data-subject requests (Art. 15-17): submit, follow, decide, export."),
    Tag(name="manifests", description="The registry of manifests: what personal data each system holds."),
    Tag(name="consent", description="The consent ledger (Art. 7(1)): grants, withdrawals, status."),
    Tag(name="audit", description="The tamper-evident audit log: events, chain verification, checkpoints."),
    Tag(name="retention", description="Retention policies and their purges."),
    Tag(name="backups", description="Backup health and restore tests."),
    Tag(name="system", description="Probes and Prometheus metrics; no token needed."),
)
_PROBLEMS = {
    400: "Malformed request: a parameter or body that does not match this document",
    415: "The body's Content-Type is not one this operation reads",
    429: "Too many requests; retry after `Retry-After` seconds",
    503: "The service store or a target database is unavailable",
}


def docs_assets_router() -> Router:
    """Swagger UI's JavaScript and CSS, shipped with the service."""
    return create_static_files_router(
        path=DOCS_ASSETS_PATH,
        directories=[swagger_ui_path],
        include_in_schema=False,
        name="docs-assets",
    )


def openapi_config() -> OpenAPIConfig:
    """The document's header, security schemes and the docs page (Swagger UI at ``/schema``)."""
    swagger = SwaggerRenderPlugin(
        js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon="",
        path="/swagger",
    )
    return OpenAPIConfig(
        title="Lethe",
        version=__version__,
        summary="GDPR data-subject requests, retention, consent and audit for your databases",
        description=INTRODUCTION.read_text(encoding="utf-8"),
        path="/schema",
        render_plugins=[swagger],
        tags=list(TAGS),
        components=Components(
            security_schemes={
                "BearerToken": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="A JWT (exp, iat, sub, aud, iss) whose `scope` claim holds the scopes "
                    "each operation names.",
                ),
                "OAuth2": SecurityScheme(
                    type="oauth2",
                    description="The same JWT obtained with the client-credentials grant of your "
                    "identity provider (the token URL shown is an example: use your provider's).",
                    flows=OAuthFlows(client_credentials=OAuthFlow(token_url=TOKEN_URL, scopes=SCOPES)),
                ),
            }
        ),
        use_handler_docstrings=True,
    )


def _handlers(app: Litestar) -> dict[tuple[str, str], HTTPRouteHandler]:
    found: dict[tuple[str, str], HTTPRouteHandler] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                for method in handler.http_methods:
                    found[(route.path_format or "/", method.lower())] = handler
    return found


def _scope(handler: HTTPRouteHandler | None) -> str | None:
    if handler is None:
        return None
    scope: str | None = handler.opt.get(REQUIRED_SCOPE)
    return scope


def _retry_after() -> dict[str, Any]:
    return {
        "Retry-After": {
            "description": "Seconds to wait before the next attempt (on a 503, when a retry is "
            "expected to succeed soon).",
            "schema": {"type": "integer", "minimum": 0},
        }
    }


def _problem(status: int, description: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}},
    }
    if status in (429, 503):
        response["headers"] = _retry_after()
    return response


def _examples(examples: Iterable[BodyExample]) -> dict[str, dict[str, dict[str, Any]]]:
    by_component: dict[str, dict[str, dict[str, Any]]] = {}
    for example in examples:
        component = type(example.value).__name__
        by_component.setdefault(component, {})[example.name] = {
            "summary": example.summary,
            "value": msgspec.to_builtins(example.value),
        }
    return by_component


def _attach_examples(content: dict[str, Any], by_component: dict[str, dict[str, Any]]) -> None:
    for media in content.values():
        ref = media.get("schema", {}).get("$ref", "")
        found = by_component.get(ref.rsplit("/", 1)[-1])
        if found:
            media["examples"] = found


def _secure(operation: dict[str, Any], path: str, scope: str | None) -> None:
    if not path.startswith("/v1/"):
        operation["security"] = []
        return
    if scope is None:  # a token, whatever its scopes
        operation["security"] = [{"BearerToken": []}]
        return
    operation["security"] = [{"OAuth2": [scope]}, {"BearerToken": []}]
    sentence = f"Requires the scope `{scope}`."
    operation["description"] = f"{operation.get('description', '').rstrip()}\n\n{sentence}".lstrip()


def _complete_operation(
    path: str,
    operation: dict[str, Any],
    handler: HTTPRouteHandler | None,
    settings: Settings,
    by_component: dict[str, dict[str, Any]],
) -> None:
    _secure(operation, path, _scope(handler))
    responses: dict[str, Any] = operation["responses"]
    parameters = operation.get("parameters", [])
    body = operation.get("requestBody")
    if parameters or body or "400" in responses:
        responses["400"] = _problem(400, _PROBLEMS[400])
    if body:
        responses["415"] = _problem(415, _PROBLEMS[415])
        _attach_examples(body["content"], by_component)
    if path.startswith("/v1/"):
        responses["429"] = _problem(429, _PROBLEMS[429])
        # every /v1 operation uses the store: a connection the server ended answers 503
        unavailable = responses.setdefault("503", _problem(503, _PROBLEMS[503]))
        unavailable.setdefault("headers", {}).update(_retry_after())
    idempotent = any(p["in"] == "header" and p["name"] == "Idempotency-Key" for p in parameters)
    for status, response in responses.items():
        for header in response.get("headers", {}).values():
            header.setdefault("schema", {"type": "string"})  # Litestar omits it for documentation_only
        if not status.startswith("2"):
            continue
        _attach_examples(response.get("content", {}), by_component)
        if idempotent:
            response.setdefault("headers", {})["Idempotent-Replayed"] = {
                "description": "`true` when this is the stored answer to an earlier request with the "
                "same Idempotency-Key.",
                "schema": {"type": "string", "enum": ["true"]},
            }
    for parameter in parameters:
        parameter["schema"] = _not_nullable(parameter["schema"])
        if parameter["in"] == "query" and parameter["name"] == "limit":
            parameter["schema"]["maximum"] = settings.max_page_size


def _not_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter is omitted, never null: drop the ``None`` of ``X | None``."""
    alternatives = schema.get("oneOf")
    if alternatives and {"type": "null"} in alternatives:
        rest = [a for a in alternatives if a != {"type": "null"}]
        merged = {k: v for k, v in schema.items() if k != "oneOf"}
        return {**rest[0], **merged} if len(rest) == 1 else {**merged, "oneOf": rest}
    kinds = schema.get("type")
    if isinstance(kinds, list) and "null" in kinds:
        kept = [k for k in kinds if k != "null"]
        schema = {**schema, "type": kept[0] if len(kept) == 1 else kept}
        if "enum" in schema:
            schema["enum"] = [v for v in schema["enum"] if v is not None]
    return schema


def complete_openapi(app: Litestar, settings: Settings, examples: Iterable[BodyExample]) -> None:
    """Add to the served document what the handlers cannot declare themselves (see the module)."""
    from litestar._openapi.plugin import OpenAPIPlugin

    schema = app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
    handlers = _handlers(app)
    by_component = _examples(examples)
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                _complete_operation(path, operation, handlers.get((path, method)), settings, by_component)
    components = schema["components"]["schemas"]
    _add_struct_constraints(components)
    for name, component in components.items():
        if name in by_component:
            component["examples"] = [e["value"] for e in by_component[name].values()]


_CONSTRAINTS = frozenset(
    {
        "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "minItems", "maxItems", "minProperties", "maxProperties",
    }
)  # fmt: skip


def _constraint_count(schema: object) -> int:
    if isinstance(schema, dict):
        return sum(k in _CONSTRAINTS for k in schema) + sum(_constraint_count(v) for v in schema.values())
    if isinstance(schema, list):
        return sum(_constraint_count(v) for v in schema)
    return 0


def _structs(base: type[msgspec.Struct]) -> Iterable[type[msgspec.Struct]]:
    for sub in base.__subclasses__():
        yield sub
        yield from _structs(sub)


def _add_struct_constraints(components: dict[str, Any]) -> None:
    """Declare what msgspec enforces and Litestar's schemas drop: constraints inside dicts and
    optional fields (``minProperties``, value ``maxLength``...) and ``additionalProperties: false``
    on input bodies, taken from msgspec's own schema of the same struct."""
    structs = {t.__name__: t for t in (*_structs(BaseStruct), *_structs(InputStruct))}
    known = [t for name, t in structs.items() if name in components]
    _, strict = msgspec.json.schema_components(known, ref_template="#/components/schemas/{name}")
    for name, component in components.items():
        if name not in strict or name not in structs:
            continue
        if issubclass(structs[name], InputStruct):
            component["additionalProperties"] = False
        properties = component.get("properties", {})
        for field, declared in strict[name].get("properties", {}).items():
            ours = properties.get(field)
            if ours is not None and _constraint_count(declared) > _constraint_count(ours):
                properties[field] = {**declared, **{k: v for k, v in ours.items() if k == "description"}}


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
    """The spec as stable, indented JSON, in the order Litestar builds it.

    Not key-sorted: where an answer has several media types, the first is the one generators
    that read only one pick (the export lists ``application/zip`` first, see
    ``openapi/client-config.yaml``).
    """
    from litestar._openapi.plugin import OpenAPIPlugin

    from app.asgi import create_app

    app = create_app(load_settings(_SPEC_ENV))
    schema = app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
    return json.dumps(schema, indent=2) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "openapi/openapi.json")
    target.write_text(render_openapi(), encoding="utf-8")
