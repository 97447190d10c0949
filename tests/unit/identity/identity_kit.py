"""Helpers for the identity unit tests: signers, claims, a token minter (imported by the tests)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from garrison.config.models import Issuer, StaticKey
from garrison.identity.keys import KeySet, load_static_keys
from garrison.identity.tokens import TokenVerifier

NOW = 1_700_000_000.0
ISS = "https://idp.example.com"
AUD = "https://api.example.com"
DROP = object()  # a claim value meaning "leave this claim out"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_json(obj: Any) -> str:
    return b64u(json.dumps(obj, separators=(",", ":")).encode())


@dataclass(frozen=True)
class Signer:
    """A private key with the kid and alg it signs with."""

    kid: str
    alg: str
    private: Any

    @property
    def public(self) -> Any:
        return self.private.public_key()

    def public_pem(self) -> bytes:
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        return self.public.public_bytes(serialization.Encoding.PEM, spki)

    def jwk(self, **extra: Any) -> dict[str, Any]:
        algo = jwt.get_algorithm_by_name(self.alg)
        d: dict[str, Any] = algo.to_jwk(self.public, as_dict=True)
        d["kid"] = self.kid
        d.update(extra)
        return {k: v for k, v in d.items() if v is not DROP}

    def private_jwk(self) -> dict[str, Any]:
        algo = jwt.get_algorithm_by_name(self.alg)
        d: dict[str, Any] = algo.to_jwk(self.private, as_dict=True)
        d["kid"] = self.kid
        return d

    def self_signed_cert_der(self) -> bytes:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
        start = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.public)
            .serial_number(1)
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=3650))
            .sign(self.private, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.DER)


def claims(**over: Any) -> dict[str, Any]:
    """Valid access-token claims at NOW; ``name=DROP`` removes a claim."""
    c: dict[str, Any] = {
        "iss": ISS,
        "sub": "user-42",
        "aud": AUD,
        "exp": NOW + 300,
        "iat": NOW - 10,
        "jti": "t-1",
        "scope": "orders:read orders:write",
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not DROP}


def mint(
    signer: Signer, payload: dict[str, Any] | None = None, *, alg: str | None = None, **headers: Any
) -> str:
    """A token signed by ``signer`` with PyJWT's algorithm objects (so PyJWT's encode-side checks do not
    get in the way). Header kid defaults to the signer's; ``kid=DROP`` omits it; ``typ`` only if given.
    """
    h: dict[str, Any] = {"alg": alg or signer.alg, "kid": signer.kid}
    h.update(headers)
    h = {k: v for k, v in h.items() if v is not DROP and not (k == "typ" and v is None)}
    body = payload if payload is not None else claims()
    signing_input = f"{b64u_json(h)}.{b64u_json(body)}"
    sig = jwt.get_algorithm_by_name(alg or signer.alg).sign(signing_input.encode(), signer.private)
    return f"{signing_input}.{b64u(sig)}"


def sign_raw(signer: Signer, header_b64: str, payload_b64: str) -> str:
    """A token from hand-made header/payload parts, correctly signed: only the JSON is odd."""
    algo = jwt.get_algorithm_by_name(signer.alg)
    signing_input = f"{header_b64}.{payload_b64}".encode()
    return f"{header_b64}.{payload_b64}.{b64u(algo.sign(signing_input, signer.private))}"


@dataclass(frozen=True)
class Kit:
    es256: Signer
    es384: Signer
    es512: Signer
    rs256: Signer
    ps256: Signer  # the same RSA key, signing with PS256
    eddsa: Signer
    attacker: Signer  # an ES256 key nobody trusts

    def issuer(self, *signers: Signer, **over: Any) -> Issuer:
        signers = signers or (self.es256,)
        fields: dict[str, Any] = {
            "name": "idp",
            "issuer": ISS,
            "audiences": [AUD],
            "algorithms": sorted({s.alg for s in signers}),
            "keys": [StaticKey(jwk=s.jwk()) for s in signers],
        }
        fields.update(over)
        return Issuer(**fields)

    def verifier(self, *signers: Signer, **over: Any) -> TokenVerifier:
        iss = self.issuer(*signers, **over)
        keys: KeySet = load_static_keys(iss.keys, iss.algorithms)
        return TokenVerifier(iss, lambda: keys)


TokenFactory = Callable[[Kit], str]


def make_kit() -> Kit:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Kit(
        es256=Signer("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1())),
        es384=Signer("ec-384", "ES384", ec.generate_private_key(ec.SECP384R1())),
        es512=Signer("ec-521", "ES512", ec.generate_private_key(ec.SECP521R1())),
        rs256=Signer("rsa-1", "RS256", rsa_key),
        ps256=Signer("rsa-1", "PS256", rsa_key),
        eddsa=Signer("ed-1", "EdDSA", ed25519.Ed25519PrivateKey.generate()),
        attacker=Signer("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1())),
    )
