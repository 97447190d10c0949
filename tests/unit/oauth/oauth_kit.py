"""Helpers for the token-service tests: a fixed clock, client keys, assertions, SVID-like certs."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from garrison.identity.ca import SpiffeId
from garrison.identity.oauth import (
    ASSERTION_TYPE,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_TOKEN_EXCHANGE,
    AuthMethod,
    ClientAuthContext,
    ClientRegistration,
    MemoryClientRegistry,
    MemoryOAuthState,
    ServerSettings,
    SigningKeyRing,
    TokenService,
)

TD = "example.org"
NOW = 1_800_000_000.0
ISSUER = "https://cp.example.org"
TOKEN_ENDPOINT = f"{ISSUER}/oauth2/token"
ORDERS = f"spiffe://{TD}/svc/orders"
PAYMENTS = f"spiffe://{TD}/svc/payments"
USERS = f"spiffe://{TD}/svc/users"
GATEWAY = f"spiffe://{TD}/svc/gateway"
MESHY = f"spiffe://{TD}/svc/meshy"  # authenticates with mTLS
AUDIENCES = frozenset({"payments", "users", "inventory"})
NO_PEER = ClientAuthContext()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: ec.EllipticCurvePrivateKey, kid: str | None = None) -> dict[str, Any]:
    jwk = dict(ECAlgorithm.to_jwk(key.public_key(), as_dict=True))
    if kid:
        jwk["kid"] = kid
    return jwk


@dataclass
class Client:
    client_id: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=p256)

    def assertion(
        self,
        now: float = NOW,
        *,
        alg: str = "ES256",
        headers: dict[str, Any] | None = None,
        key: Any = None,
        **claims: Any,
    ) -> str:
        body: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": ISSUER,
            "iat": int(now),
            "exp": int(now) + 60,
            "jti": uuid.uuid4().hex,
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.key, algorithm=alg, headers=headers)

    def form(self, now: float = NOW, **params: str) -> dict[str, str]:
        out = {
            "grant_type": GRANT_CLIENT_CREDENTIALS,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(now),
        }
        out.update(params)
        return out


def unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    h = b64url(json.dumps(header).encode())
    p = b64url(json.dumps(claims).encode())
    return f"{h}.{p}."


def hs256_with_public_key(client: Client, now: float = NOW) -> str:
    """RFC 8725 §2.1 confusion: HMAC keyed with the client's public key (as PEM)."""
    secret = client.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": ISSUER,
        "exp": int(now) + 60,
        "iat": int(now),
        "jti": uuid.uuid4().hex,
    }
    h = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64url(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64url(sig)}"


def svid_cert(spiffe_id: str, now: float = NOW, *, lifetime: float = 3600.0) -> x509.Certificate:
    """A self-signed stand-in for an already-verified X.509-SVID (one URI SAN)."""
    key = p256()
    start = dt.datetime.fromtimestamp(now - 10, dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "test ca")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(seconds=lifetime))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True
        )
        .sign(key, hashes.SHA256())
    )


@dataclass
class Kit:
    service: TokenService
    state: MemoryOAuthState
    registry: MemoryClientRegistry
    orders: Client
    gateway: Client
    users: Client


def make_kit(now: float = NOW, *, ttl: float = 300.0, **external: Any) -> Kit:
    orders, gateway, users = Client(ORDERS), Client(GATEWAY), Client(USERS)
    registry = MemoryClientRegistry(
        [
            ClientRegistration(
                SpiffeId(ORDERS),
                AuthMethod.PRIVATE_KEY_JWT,
                scopes=frozenset({"payments:read", "payments:write"}),
                audiences=frozenset({"payments"}),
                jwks=(public_jwk(orders.key, "orders-1"),),
            ),
            ClientRegistration(
                SpiffeId(GATEWAY),
                AuthMethod.PRIVATE_KEY_JWT,
                scopes=frozenset({"gw"}),
                audiences=frozenset({"payments", "users"}),
                jwks=(public_jwk(gateway.key),),
                grant_types=frozenset({GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE}),
                default_audience="users",
            ),
            ClientRegistration(
                SpiffeId(USERS),
                AuthMethod.PRIVATE_KEY_JWT,
                scopes=frozenset({"users:read"}),
                audiences=frozenset({"payments"}),
                jwks=(public_jwk(users.key),),
            ),
            ClientRegistration(
                SpiffeId(MESHY),
                AuthMethod.TLS_CLIENT_AUTH,
                scopes=frozenset({"inventory:read"}),
                audiences=frozenset({"inventory"}),
            ),
        ]
    )
    state = MemoryOAuthState()
    settings = ServerSettings(ISSUER, AUDIENCES, access_token_ttl=ttl)
    ring = SigningKeyRing.generate(now)
    svc = TokenService(settings, ring, registry, replay=state, revocations=state, **external)
    return Kit(svc, state, registry, orders, gateway, users)
