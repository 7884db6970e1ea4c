"""Token verification: pinned algorithms, required claims, key sources, scopes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.config import Settings, load_settings
from app.lib.auth import TokenVerifier, mint_token
from app.lib.errors import InvalidToken

SECRET = "unit-test-secret-that-is-at-least-32-bytes"
AUDIT = "unit-test-audit-key-that-is-at-least-32-bytes"


def _settings(**env: str) -> Settings:
    return load_settings(
        {"LETHE_JWT_SECRET": SECRET, "LETHE_AUDIT_KEY": AUDIT, "LETHE_AUDIT_CHAIN_KEY": AUDIT, **env}
    )


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "svc-orders",
        "aud": "lethe",
        "iss": "lethe",
        "iat": now,
        "exp": now + 300,
        "scope": "requests:read requests:write",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


async def test_valid_hs256_token_yields_principal_and_scopes() -> None:
    settings = _settings()
    token = mint_token(settings, sub="svc-orders", scopes=["audit:read"], client_id="orders")
    principal = await TokenVerifier(settings).verify(token)
    assert principal.sub == "svc-orders"
    assert principal.client_id == "orders"
    assert principal.scopes == frozenset({"audit:read"})


async def test_scp_list_claim_is_accepted() -> None:
    token = jwt.encode(_claims(scope=None, scp=["consent:read", "audit:read"]), SECRET, algorithm="HS256")
    principal = await TokenVerifier(_settings()).verify(token)
    assert principal.scopes == frozenset({"consent:read", "audit:read"})


async def test_forged_signature_is_rejected() -> None:
    token = jwt.encode(_claims(), "another-secret-that-is-also-32-bytes-long", algorithm="HS256")
    with pytest.raises(InvalidToken, match="signature"):
        await TokenVerifier(_settings()).verify(token)


async def test_expired_token_is_rejected_beyond_leeway() -> None:
    now = int(time.time())
    token = jwt.encode(_claims(iat=now - 600, exp=now - 120), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="expired"):
        await TokenVerifier(_settings(LETHE_JWT_LEEWAY_SECONDS="30")).verify(token)


async def test_expiry_within_leeway_is_tolerated() -> None:
    now = int(time.time())
    token = jwt.encode(_claims(iat=now - 600, exp=now - 10), SECRET, algorithm="HS256")
    assert (await TokenVerifier(_settings(LETHE_JWT_LEEWAY_SECONDS="30")).verify(token)).sub == "svc-orders"


async def test_alg_none_is_rejected() -> None:
    token = jwt.encode(_claims(), None, algorithm="none")
    with pytest.raises(InvalidToken, match="algorithm 'none'"):
        await TokenVerifier(_settings()).verify(token)


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "aud", "iss"])
async def test_each_required_claim_is_enforced(claim: str) -> None:
    token = jwt.encode(_claims(**{claim: None}), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        await TokenVerifier(_settings()).verify(token)


async def test_wrong_audience_and_issuer_are_rejected() -> None:
    for bad in ({"aud": "someone-else"}, {"iss": "someone-else"}):
        token = jwt.encode(_claims(**bad), SECRET, algorithm="HS256")
        with pytest.raises(InvalidToken):
            await TokenVerifier(_settings()).verify(token)


async def test_hs256_token_is_refused_when_only_rs256_is_pinned() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        rsa_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = load_settings(
        {
            "LETHE_JWT_PUBLIC_KEY": public_pem,
            "LETHE_AUDIT_KEY": AUDIT,
            "LETHE_AUDIT_CHAIN_KEY": AUDIT,
            "LETHE_JWT_ALGORITHMS": "RS256",
        }
    )
    # The classic confusion attack: an HS256 token "signed" with the public key.
    forged = jwt.encode(_claims(), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="HS256"):
        await TokenVerifier(settings).verify(forged)
    good = jwt.encode(_claims(), rsa_key, algorithm="RS256")
    assert (await TokenVerifier(settings).verify(good)).sub == "svc-orders"


async def test_garbage_is_a_malformed_token() -> None:
    with pytest.raises(InvalidToken, match="malformed"):
        await TokenVerifier(_settings()).verify("not-a-jwt")


async def test_a_verified_token_is_remembered_until_it_expires() -> None:
    verifier = TokenVerifier(_settings(LETHE_JWT_LEEWAY_SECONDS="0"))
    token = jwt.encode(_claims(exp=int(time.time()) + 2), SECRET, algorithm="HS256")
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first  # answered from the cache, not decoded again
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(InvalidToken):  # another token (a tampered signature) is checked in full
        await verifier.verify(forged)
    await asyncio.sleep(3.1)
    with pytest.raises(InvalidToken, match="expired"):  # the remembered answer ends with the token
        await verifier.verify(token)


async def test_a_rejected_token_is_not_remembered() -> None:
    verifier = TokenVerifier(_settings())
    token = jwt.encode(_claims(), "another-secret-that-is-also-32-bytes-long", algorithm="HS256")
    for _ in range(2):
        with pytest.raises(InvalidToken, match="signature"):
            await verifier.verify(token)
