"""The client side of RFC 7523 §2.2: a signed JWT assertion that authenticates a client.

Used by the CLI (`garrison token issue`), the demo and tests; the server side is ``client_auth``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from garrison.identity.oauth.client_auth import ASSERTION_TYPE

DEFAULT_ASSERTION_TTL = 60.0

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def _alg(key: PrivateKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}[key.curve.key_size]
    if isinstance(key, rsa.RSAPrivateKey):
        return "PS256"
    return "EdDSA"


def build_client_assertion(
    client_id: str,
    key: PrivateKey,
    audience: str,
    *,
    now: float | None = None,
    ttl: float = DEFAULT_ASSERTION_TTL,
    kid: str | None = None,
    jti: str | None = None,
) -> str:
    """RFC 7523 §3: ``iss`` = ``sub`` = the client id, ``aud`` = the authorization server's issuer,
    a fresh random ``jti`` (single use) and a short ``exp``."""
    now = time.time() if now is None else now
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": int(now),
        "exp": int(now + ttl),
        "jti": jti or secrets.token_urlsafe(18),
    }
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm=_alg(key), headers=headers)


def assertion_form(client_id: str, assertion: str, **params: str) -> dict[str, str]:
    """The token-endpoint form fields for ``private_key_jwt`` client authentication."""
    return {
        "client_id": client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **params,
    }


__all__ = ["DEFAULT_ASSERTION_TTL", "assertion_form", "build_client_assertion"]
