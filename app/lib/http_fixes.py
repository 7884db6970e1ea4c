"""Gaps between Litestar's HTTP behaviour and the published contract, closed in one place.

- JSON bodies: Litestar converts them leniently (``"occurred_at": 0`` becomes 1970, ``"true"``
  becomes ``True``); the contract says what types are accepted, so bodies are checked strictly.
- ``?limit=null``: Litestar reads the text ``null`` as ``None`` for an optional number, boolean,
  enum or UUID parameter, so a value the contract forbids would be taken as "omitted".
- ``OPTIONS``: the ``Allow`` header lists only the methods of the first handler registered on a
  path when several handlers share it.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any, Union, get_args, get_origin

import msgspec
from litestar import Litestar, Request
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope

from app.lib.errors import ValidationFailed, field_error

__all__ = ("allow_header_fixer", "enforce_contract")

_TEXT_TYPES = (str, type(None))


@cache
def _non_text_query_parameters(handler: HTTPRouteHandler) -> frozenset[str]:
    """Query parameters of ``handler`` whose value is not text (and so could decode from ``null``)."""
    names: set[str] = set()
    for name, field in handler.parsed_fn_signature.parameters.items():
        definition = field.kwarg_definition
        if getattr(definition, "header", None) or getattr(definition, "cookie", None):
            continue
        annotation = field.annotation
        inner = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
        if any(t not in _TEXT_TYPES for t in inner):
            alias = getattr(definition, "query", None) or name
            names.add(alias)
    return frozenset(names)


@cache
def _body_struct(handler: HTTPRouteHandler) -> type[msgspec.Struct] | None:
    field = handler.parsed_fn_signature.parameters.get("data")
    annotation = field.annotation if field is not None else None
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    return None


def _body_field(message: str) -> str:
    """``Expected `int`, got `str` - at `$.filters[0].value``` -> ``body.filters[0].value``."""
    _, _, where = message.rpartition(" - at `$")
    return "body" + where.rstrip("`") if where else "body"


async def _strict_body(request: Request[Any, Any, Any], struct: type[msgspec.Struct]) -> None:
    if "json" not in request.headers.get("content-type", "").lower():
        return
    try:
        msgspec.json.decode(await request.body(), type=struct, strict=True)
    except msgspec.ValidationError as exc:
        field = _body_field(str(exc))
        message = str(exc).partition(" - at ")[0]
        raise ValidationFailed(f"{field}: {message}", [field_error(field, message)]) from exc
    except msgspec.DecodeError:
        return  # not JSON at all: Litestar's own parsing answers it


async def enforce_contract(request: Request[Any, Any, Any]) -> None:
    """``before_request``: JSON bodies must match their types exactly, and a number, boolean,
    enum or id query parameter given as ``null`` is refused (422) instead of read as omitted."""
    handler = request.route_handler
    if not isinstance(handler, HTTPRouteHandler):
        return
    typed = _non_text_query_parameters(handler)
    for name, value in request.query_params.items():
        if value == "null" and name in typed:
            raise ValidationFailed(
                f"query parameter '{name}' is null; omit it instead",
                [field_error(f"query.{name}", "null is not a value; omit the parameter")],
            )
    struct = _body_struct(handler)
    if struct is not None:
        await _strict_body(request, struct)


def allow_header_fixer() -> tuple[Callable[[Message, Scope], Awaitable[None]], Callable[[Litestar], None]]:
    """A ``before_send`` hook that writes the full ``Allow`` list, and the function that arms it
    with the app's routes once the app is built."""
    methods: dict[str, str] = {}

    async def before_send(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
            return
        allow = methods.get(str(scope.get("path_template", "")))
        if allow is None:
            return
        headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
        message["headers"] = [*headers, (b"allow", allow.encode("latin-1"))]

    def arm(app: Litestar) -> None:
        for route in app.routes:
            if isinstance(route, HTTPRoute):
                methods[route.path_format] = ", ".join(sorted(route.methods))

    return before_send, arm
