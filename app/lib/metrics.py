"""HTTP metrics named apart from the domain's: ``lethe_http_*``, by method and route template."""

from __future__ import annotations

import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge, Histogram

from app import __version__

__all__ = ("BUILD_INFO", "HttpMetricsMiddleware")

UNMEASURED = frozenset({"/metrics", "/healthz", "/readyz"})
"""Probe and scrape paths: counted by the kubelet and Prometheus themselves."""

HTTP_REQUESTS = Counter(
    "lethe_http_requests",
    "HTTP requests answered, by method, route and status code",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "lethe_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_IN_PROGRESS = Gauge(
    "lethe_http_requests_in_progress",
    "HTTP requests being answered, by method and route",
    ["method", "route"],
)
BUILD_INFO = Gauge("lethe_build_info", "Always 1; the version of the running build", ["version"])
BUILD_INFO.labels(version=__version__).set(1)


class HttpMetricsMiddleware:
    """Counts and times every routed HTTP request; the route is the template (``/v1/requests/{id}``),
    never the raw path, so a label holds no identifier."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = str(scope.get("path_template") or "unrouted")
        if scope["type"] != ScopeType.HTTP or route in UNMEASURED:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status = 500
        started = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        in_progress = HTTP_IN_PROGRESS.labels(method=method, route=route)
        in_progress.inc()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            in_progress.dec()
            HTTP_DURATION.labels(method=method, route=route).observe(time.perf_counter() - started)
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
