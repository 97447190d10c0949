"""RFC 9068 JWT access tokens: minted here, verified by the gateway's ``TokenVerifier``.

Header ``{alg, typ: at+jwt, kid}``; claims ``iss exp aud sub client_id iat jti scope`` plus
``cnf`` (RFC 8705 §3.1) and ``act`` (RFC 8693 §4.1) when they apply. Never logs a token.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from garrison.config.models import Issuer
from garrison.identity.oauth.form import format_scope
from garrison.identity.oauth.signing_keys import SigningKeyRing
from garrison.identity.tokens import TokenVerifier

AT_JWT: Final = "at+jwt"  # RFC 9068 §2.1
ACCESS_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 RFC 8693 §3
DEFAULT_ACCESS_TOKEN_TTL: Final = 300.0
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed access token. ``repr`` never shows it."""

    access_token: str = field(repr=False)
    jti: str
    issued_at: int
    expires_at: int
    audience: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """RFC 6749 §5.1 (and RFC 8693 §2.2.1) successful token response; status 200."""

    access_token: str = field(repr=False)
    expires_in: int
    scope: str
    issued_token_type: str | None = None
    token_type: str = "Bearer"  # noqa: S105 - a token type name
    status: int = 200

    @property
    def headers(self) -> dict[str, str]:
        return dict(_NO_STORE)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.issued_token_type is not None:
            out["issued_token_type"] = self.issued_token_type
        return out

    @classmethod
    def of(cls, tok: IssuedToken, now: float, *, exchanged: bool = False) -> TokenResponse:
        return cls(
            tok.access_token,
            max(0, tok.expires_at - math.floor(now)),
            format_scope(tok.scopes),
            ACCESS_TOKEN_TYPE if exchanged else None,
        )


class AccessTokenMinter:
    """Signs RFC 9068 access tokens with the ring's current key."""

    __slots__ = ("_ring", "issuer", "ttl")

    def __init__(self, ring: SigningKeyRing, issuer: str, ttl: float = DEFAULT_ACCESS_TOKEN_TTL) -> None:
        if ttl <= 0:
            raise ValueError("access token ttl must be positive")
        self._ring = ring
        self.issuer = issuer
        self.ttl = ttl

    def mint(
        self,
        *,
        sub: str,
        client_id: str,
        audience: str,
        scopes: frozenset[str],
        now: float,
        cnf_thumbprint: str | None = None,
        act: Mapping[str, Any] | None = None,
        not_after: float | None = None,
    ) -> IssuedToken:
        iat = math.floor(now)
        exp = math.floor(now + self.ttl)
        if not_after is not None:
            exp = min(exp, math.floor(not_after))  # never outlive what it was derived from
        jti = secrets.token_urlsafe(18)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": audience,  # RFC 9068 §3: one distinct audience per resource
            "client_id": client_id,
            "iat": iat,
            "exp": exp,
            "jti": jti,
            "scope": format_scope(scopes),
        }
        if cnf_thumbprint is not None:
            claims["cnf"] = {"x5t#S256": cnf_thumbprint}  # RFC 8705 §3.1
        if act is not None:
            claims["act"] = dict(act)  # RFC 8693 §4.1
        token = self._ring.sign(claims, typ=AT_JWT)
        return IssuedToken(token, jti, iat, exp, audience, scopes)

    def __repr__(self) -> str:
        return f"<AccessTokenMinter iss={self.issuer!r} ttl={self.ttl:g}s>"


def own_token_verifier(
    ring: SigningKeyRing,
    *,
    issuer: str,
    jwks_uri: str,
    audiences: frozenset[str],
    leeway: float,
    max_lifetime: float,
) -> TokenVerifier:
    """The gateway's ``TokenVerifier`` for our own tokens, keys taken from the ring in process."""
    cfg = Issuer.model_validate(
        {
            "name": "garrison-token-service",
            "issuer": issuer,
            "audiences": sorted(audiences),
            "algorithms": sorted({k.alg for k in ring.keys}),
            "jwks_url": jwks_uri,  # declared for the config model; keys come from ``ring.keyset``
            "typ": AT_JWT,
            "workload_identities": True,
            "leeway_seconds": leeway,
            "max_token_lifetime_seconds": max_lifetime,
        }
    )
    return TokenVerifier(cfg, ring.keyset)


__all__ = [
    "ACCESS_TOKEN_TYPE",
    "AT_JWT",
    "DEFAULT_ACCESS_TOKEN_TTL",
    "AccessTokenMinter",
    "IssuedToken",
    "TokenResponse",
    "own_token_verifier",
]
