"""Outbound safety of webhook deliveries: which destinations may be called, and how.

A URL must be ``https`` to a host whose every address is public, unless the operator lists the
host (or a network holding its addresses) in ``LETHE_WEBHOOK_ALLOWED_HOSTS``. The check runs at
registration and again before every send; the send then connects to the address that was
checked (the host name only goes into ``Host`` and TLS SNI/verification), so a DNS answer that
changes between check and connect (rebinding) cannot redirect a delivery to an internal service.
Redirects are not followed, timeouts are short, and at most a few kilobytes of the answer are
read; the answer is never logged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.lib.errors import DestinationRefused

__all__ = ("AllowList", "Destination", "SendResult", "check_destination", "post_signed", "sender_client")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_CHARS = 2048
RESOLVE_TIMEOUT_SECONDS = 5.0
"""A host whose name does not resolve within this is refused (a hung resolver blocks nothing)."""


@dataclass(frozen=True)
class AllowList:
    """Host names and networks the operator allows although they are not public (or not https)."""

    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """``LETHE_WEBHOOK_ALLOWED_HOSTS``: names and CIDR networks separated by spaces or commas."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in text.replace(",", " ").split():
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.strip(".").lower())
        return cls(frozenset(hosts), tuple(networks))

    def covers(self, host: str, address: IPAddress) -> bool:
        """Whether the operator allowed this host name, or a network holding this address."""
        return host in self.hosts or any(address in network for network in self.networks)


@dataclass(frozen=True)
class Destination:
    """A checked URL and the address a delivery connects to."""

    url: str
    host: str
    address: IPAddress


def _is_public(address: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private, link-local (cloud metadata), CGNAT, reserved."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def _resolve(host: str, port: int, field: str) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    lookup = asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    try:
        infos = await asyncio.wait_for(lookup, timeout=RESOLVE_TIMEOUT_SECONDS)
    except (OSError, UnicodeError, TimeoutError) as exc:
        raise DestinationRefused(field, "the host does not resolve") from exc
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


async def check_destination(url: str, allowed: AllowList, field: str = "body.url") -> Destination:
    """Check ``url`` and resolve it to the address to connect to.

    Raises:
        DestinationRefused: not http(s), credentials in the URL, plain http or a non-public
            address that the allow-list does not cover, or a host that does not resolve.
    """
    if len(url) > MAX_URL_CHARS:
        raise DestinationRefused(field, f"longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise DestinationRefused(field, "not a valid URL") from exc
    host = (parts.hostname or "").strip(".").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise DestinationRefused(field, "must be an https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused(field, "must not carry credentials")
    addresses = await _resolve(host, port, field)
    if not addresses:
        raise DestinationRefused(field, "the host does not resolve")
    for address in addresses:
        if not _is_public(address) and not allowed.covers(host, address):
            raise DestinationRefused(
                field, "the host resolves to a loopback, private, link-local or reserved address"
            )
    if parts.scheme == "http" and not all(allowed.covers(host, a) for a in addresses):
        raise DestinationRefused(field, "must use https (plain http only for allow-listed hosts)")
    return Destination(url=url, host=host, address=addresses[0])


@dataclass(frozen=True)
class SendResult:
    """What one attempt got: the status code (None: no answer), latency, and an error kind."""

    status_code: int | None
    latency_ms: int
    error: str | None

    @property
    def accepted(self) -> bool:
        """A 2xx answer: the receiver has the event."""
        return self.status_code is not None and 200 <= self.status_code < 300


def sender_client(connect_timeout: float, read_timeout: float) -> httpx.AsyncClient:
    """The HTTP client of deliveries: no redirects, no proxies from the environment, short timeouts."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=5.0),
        headers={"user-agent": "Lethe-Webhooks/1"},
    )


def _pinned(destination: Destination) -> tuple[httpx.URL, dict[str, Any]]:
    """The URL with the checked address as host, and the SNI name for certificate checks."""
    url = httpx.URL(destination.url)
    pinned = url.copy_with(host=str(destination.address))
    extensions = {"sni_hostname": destination.host} if url.scheme == "https" else {}
    return pinned, extensions


async def post_signed(
    client: httpx.AsyncClient,
    destination: Destination,
    body: bytes,
    headers: dict[str, str],
    response_limit: int,
) -> SendResult:
    """POST ``body`` to the checked address; reads at most ``response_limit`` bytes of the answer."""
    url, extensions = _pinned(destination)
    original = httpx.URL(destination.url)
    host_header = original.netloc.decode("ascii")
    started = time.perf_counter()
    try:
        request = client.build_request(
            "POST",
            url,
            content=body,
            headers={**headers, "host": host_header, "content-type": "application/json"},
            extensions=extensions,
        )
        response = await client.send(request, stream=True)
        try:
            received = 0
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received >= response_limit:
                    break
        finally:
            await response.aclose()
    except httpx.TimeoutException:
        return SendResult(None, _elapsed(started), "timeout")
    except httpx.HTTPError as exc:
        return SendResult(None, _elapsed(started), type(exc).__name__)
    status = response.status_code
    error = None if 200 <= status < 300 else f"http_{status}"
    return SendResult(status, _elapsed(started), error)


def _elapsed(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
