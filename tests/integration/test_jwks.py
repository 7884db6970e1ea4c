"""ES256 tokens verified against a JWKS endpoint served on loopback; keys are cached."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from app.config import load_settings
from app.lib.auth import TokenVerifier
from app.lib.errors import InvalidToken

AUDIT = "integration-audit-key-that-is-at-least-32-bytes"


class _JWKS:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": "k1", "use": "sig", "alg": "ES256"})
        self.document = json.dumps({"keys": [jwk]}).encode()
        self.hits = 0


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, _JWKS]]:
    state = _JWKS()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(state.document)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", state
    server.shutdown()
    server.server_close()


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "svc",
        "aud": "lethe",
        "iss": "lethe",
        "iat": now,
        "exp": now + 60,
        "scope": "audit:read",
    }


async def test_jwks_keys_verify_and_are_cached(jwks_server: tuple[str, _JWKS]) -> None:
    url, state = jwks_server
    settings = load_settings(
        {
            "LETHE_JWKS_URL": url,
            "LETHE_AUDIT_KEY": AUDIT,
            "LETHE_AUDIT_CHAIN_KEY": AUDIT,
            "LETHE_JWT_ALGORITHMS": "ES256",
        }
    )
    verifier = TokenVerifier(settings)
    token = jwt.encode(_claims(), state.key, algorithm="ES256", headers={"kid": "k1"})
    assert (await verifier.verify(token)).scopes == frozenset({"audit:read"})
    assert (await verifier.verify(token)).sub == "svc"
    assert state.hits == 1

    forged = jwt.encode(
        _claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "k1"}
    )
    with pytest.raises(InvalidToken):
        await verifier.verify(forged)
    unknown_kid = jwt.encode(_claims(), state.key, algorithm="ES256", headers={"kid": "nope"})
    with pytest.raises(InvalidToken, match="JWKS"):
        await verifier.verify(unknown_kid)
