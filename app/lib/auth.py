"""Bearer JWT authentication (PyJWT) and the scope each operation requires."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import anyio
import jwt
import msgspec
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import ASGIApp

from app.config import Settings
from app.lib.errors import ConfigurationError, InsufficientScope, InvalidToken

__all__ = (
    "ADMIN_SCOPE",
    "ALL_SCOPES",
    "REQUIRED_SCOPE",
    "AuthMiddleware",
    "Principal",
    "TokenVerifier",
    "mint_token",
    "requires",
)

ALL_SCOPES = (
    "requests:read",
    "requests:write",
    "requests:approve",
    "consent:read",
    "consent:write",
    "audit:read",
    "manifests:read",
    "manifests:write",
    "retention:read",
    "retention:write",
    "retention:run",
    "backups:read",
    "backups:run",
    "requests:admin",
    "webhooks:read",
    "webhooks:write",
)
ADMIN_SCOPE = "requests:admin"
"""Sees and decides every client's requests (operators, the DPO's tool); others see their own."""
REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss"]
MAX_PRINCIPAL_CHARS = 255
"""Longest ``sub``/``client_id``: what the store's actor and client columns hold."""
MAX_TOKEN_BYTES = 8192
"""A bearer token longer than this is refused before it is decoded."""
VERIFIED_CACHE_SECONDS = 60
"""A verified token is trusted again without re-verifying for at most this long (and never past
its expiry): a key withdrawn from the JWKS stops being accepted within a minute of the key cache."""
VERIFIED_CACHE_SIZE = 4096
"""Verified tokens remembered per process; the oldest is forgotten first."""


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the token's ``sub``, the calling client, and its scopes."""

    sub: str
    client_id: str
    scopes: frozenset[str]


class TokenVerifier:
    """Verifies bearer tokens against pinned algorithms and the configured key source."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._algorithms = settings.algorithms
        self._jwks: jwt.PyJWKClient | None = None
        self._verified: dict[bytes, tuple[float, Principal]] = {}
        if settings.jwks_url:
            self._jwks = jwt.PyJWKClient(
                settings.jwks_url, cache_keys=True, lifespan=settings.jwks_cache_seconds, timeout=5
            )

    async def _key_for(self, token: str, header: dict[str, Any]) -> Any:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidToken(f"algorithm '{alg}' is not accepted")
        if alg.startswith("HS"):
            if not self._settings.jwt_secret:
                raise InvalidToken(f"algorithm '{alg}' is not accepted")
            return self._settings.jwt_secret
        if self._jwks is not None:
            jwks = self._jwks
            try:
                signing_key = await anyio.to_thread.run_sync(jwks.get_signing_key_from_jwt, token)
            except jwt.PyJWKClientError as exc:
                raise InvalidToken("no JWKS key matches the token") from exc
            return signing_key.key
        if self._settings.jwt_public_key:
            return self._settings.jwt_public_key
        raise InvalidToken(f"algorithm '{alg}' is not accepted")

    async def verify(self, token: str) -> Principal:
        """Decode and check a token; every failure is an :class:`InvalidToken`.

        A token that passed is remembered by its SHA-256 until it expires (or for
        :data:`VERIFIED_CACHE_SECONDS`, whichever comes first), so a client's next calls skip the
        signature check; a token that failed is never remembered.
        """
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken(f"token longer than {MAX_TOKEN_BYTES} bytes")
        digest = hashlib.sha256(token.encode()).digest()
        now = time.time()
        remembered = self._verified.get(digest)
        if remembered is not None:
            if now < remembered[0]:
                return remembered[1]
            del self._verified[digest]
        principal, expires = await self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[digest] = (
            min(expires + self._settings.jwt_leeway_seconds, now + VERIFIED_CACHE_SECONDS),
            principal,
        )
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        """The principal of a token and its expiry (epoch seconds), after every check."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:  # malformed, a non-string kid, an unknown crit extension
            raise InvalidToken("malformed token") from exc
        if header.get("crit") is not None:
            raise InvalidToken("token header names critical extensions this service does not support")
        key = await self._key_for(token, header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                leeway=self._settings.jwt_leeway_seconds,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token has expired") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token lacks the '{exc.claim}' claim") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("token audience is not accepted") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("token issuer is not accepted") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken("token signature or claims are invalid") from exc
        return _principal(claims), float(claims["exp"])


def _scopes(claims: dict[str, Any]) -> list[str]:
    """``scope`` as a space-separated string, or ``scp`` as a string or a list of strings."""
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        return raw.split()
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return list(raw)
    raise InvalidToken("the scope claim must be a string or a list of strings")


def _text_claim(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_PRINCIPAL_CHARS:
        raise InvalidToken(f"the {name} claim must be a non-empty string")
    return value


def _principal(claims: dict[str, Any]) -> Principal:
    sub = _text_claim(claims, "sub")
    if sub is None:
        raise InvalidToken("token lacks the 'sub' claim")
    client_id = _text_claim(claims, "client_id") or _text_claim(claims, "azp") or sub
    return Principal(sub=sub, client_id=client_id, scopes=frozenset(_scopes(claims)))


class AuthMiddleware(AbstractAuthenticationMiddleware):
    """Authenticates every request under the router it is attached to (``/v1``), and lets it
    through only if its token carries the scope its operation :func:`requires`."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier) -> None:
        super().__init__(app)
        self.verifier = verifier

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise InvalidToken("a bearer token is required", error="missing")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("the Authorization header must be 'Bearer <token>'", error="invalid_request")
        principal = await self.verifier.verify(token.strip())
        scope = connection.route_handler.opt.get(REQUIRED_SCOPE)
        if scope is not None:
            if scope not in principal.scopes:
                raise InsufficientScope(scope)
            limiter = connection.app.state.get("rate_limiter")
            if limiter is not None:  # a call counts against the client's limit for that scope (429 past it)
                await limiter.hit(principal.client_id, scope)
        return AuthenticationResult(user=principal, auth=None)


REQUIRED_SCOPE = "lethe_required_scope"
"""The key of an operation's ``opt`` naming the scope it needs (see :func:`requires`)."""


def requires(scope: str) -> dict[str, str]:
    """The ``opt`` of an operation that needs ``scope``: :class:`AuthMiddleware` checks it.

    Not a Litestar guard: Litestar copies the route handler for every guard call, which cost
    about a tenth of a GET's CPU. The OpenAPI document names the scope of every operation from
    this same value.
    """
    if scope not in ALL_SCOPES:
        msg = f"unknown scope {scope}"
        raise ValueError(msg)
    return {REQUIRED_SCOPE: scope}


def mint_token(
    settings: Settings,
    *,
    sub: str,
    scopes: list[str],
    ttl_seconds: int = 3600,
    client_id: str | None = None,
) -> str:
    """Issue an HS256 development token with the configured audience and issuer."""
    if not settings.jwt_secret or "HS256" not in settings.algorithms:
        raise ConfigurationError("lethe token needs LETHE_JWT_SECRET and HS256 in LETHE_JWT_ALGORITHMS")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
        "iat": now,
        "exp": now + ttl_seconds,
        "scope": " ".join(scopes),
    }
    if client_id:
        claims["client_id"] = client_id
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
