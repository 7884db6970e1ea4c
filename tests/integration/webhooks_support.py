"""A real webhook receiver on loopback: records every POST, answers from a script, can hang."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
from standardwebhooks.webhooks import Webhook

__all__ = ("CLIENT_SCOPES", "Hit", "Receiver", "receiver", "until")

CLIENT_SCOPES = ("requests:read", "requests:write", "webhooks:read", "webhooks:write")
"""A calling service's scopes (no ``requests:admin``): it sees its own subscriptions only."""


@dataclass(frozen=True)
class Hit:
    """One POST the receiver got, and what it answered."""

    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict[str, Any]:
        return dict(msgspec.json.decode(self.body))

    def verify(self, secret: str) -> dict[str, Any]:
        """Check the signature with the ``standardwebhooks`` verifier; the parsed payload."""
        return dict(Webhook(secret).verify(self.body, self.headers))


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # senders post a batch at once; the default backlog of 5 drops connects


class Receiver:
    """Answers the statuses in ``script`` in turn, then 200; the first ``hang`` POSTs block until
    :meth:`release` (so a sender can be killed mid-send)."""

    def __init__(self, script: tuple[int, ...] = (), hang: int = 0) -> None:
        self.script = list(script)
        self.hang = hang
        self.hits: list[Hit] = []
        self.hanging = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def release(self) -> None:
        self._released.set()

    def _answer(self) -> tuple[int, bool]:
        with self._lock:
            status = self.script.pop(0) if self.script else 200
            hang = self.hang > 0
            self.hang -= 1 if hang else 0
        return status, hang

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status, hang = receiver._answer()
                headers = {k.lower(): v for k, v in self.headers.items()}
                if hang:
                    receiver.hits.append(Hit(headers, body, 0))
                    receiver.hanging.set()
                    receiver._released.wait(60)
                    return
                receiver.hits.append(Hit(headers, body, status))
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: object) -> None:
                return

        return Handler


@contextmanager
def receiver(script: tuple[int, ...] = (), hang: int = 0) -> Iterator[Receiver]:
    """A receiver serving on loopback for the duration of the block."""
    running = Receiver(script, hang)
    thread = threading.Thread(target=running.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.release()
        running.server.shutdown()
        running.server.server_close()


async def until(predicate: Callable[[], Any], seconds: float = 30.0) -> None:
    """Wait until ``await predicate()`` is true."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)
