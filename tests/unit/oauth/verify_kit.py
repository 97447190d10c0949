"""Independent checks of issued tokens: PyJWT with every check on, and the gateway's TokenVerifier,
both using only the published JWKS document."""

from __future__ import annotations

import json
from typing import Any

import jwt
from oauth_kit import AUDIENCES, ISSUER

from garrison.config.models import Issuer
from garrison.identity.keys import parse_jwks
from garrison.identity.tokens import TokenVerifier, VerifiedToken

REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti"]


def pyjwt_decode(token: str, jwks: dict[str, Any], audience: str) -> dict[str, Any]:
    kid = jwt.get_unverified_header(token)["kid"]
    keys = {k["kid"]: jwt.PyJWK.from_dict(k) for k in jwks["keys"]}
    return jwt.decode(
        token,
        keys[kid].key,
        algorithms=["ES256"],
        audience=audience,
        issuer=ISSUER,
        options={"require": REQUIRED},
    )


def gateway_verifier(
    jwks: dict[str, Any], *, leeway: float = 60.0, audiences: frozenset[str] = AUDIENCES
) -> TokenVerifier:
    keyset = parse_jwks(json.dumps(jwks), ["ES256"])
    cfg = Issuer.model_validate(
        {
            "name": "control-plane",
            "issuer": ISSUER,
            "audiences": sorted(audiences),
            "jwks_url": f"{ISSUER}/oauth2/jwks",
            "typ": "at+jwt",
            "leeway_seconds": leeway,
        }
    )
    return TokenVerifier(cfg, lambda: keyset)


def gateway_verify(token: str, jwks: dict[str, Any], now: float) -> VerifiedToken:
    return gateway_verifier(jwks).verify(token, now)
