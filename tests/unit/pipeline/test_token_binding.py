"""Per-request token checks that the cache cannot skip: RFC 8705 §3 certificate binding and revoked ``jti``s.

Sans-IO: the authenticator, a RequestContext as the server builds it, and a frozenset of revoked ids
(what ``TrustPuller.revoked_jtis`` holds). Each case runs twice: on a cache miss and on a cache hit.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from garrison.config.models import Issuer
from garrison.errors import ConfigError
from garrison.identity.authenticator import UNCHECKED_REVOCATIONS, JwtAuthenticator, cert_thumbprint
from garrison.pipeline.context import RequestContext
from garrison.pipeline.verdicts import CONTINUE, Deny, Verdict
from garrison.reasons import Reason

TD = "example.org"
ISS = "https://cp.example.org"
KEY = ec.generate_private_key(ec.SECP256R1())
PEM = KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
_CA = trustme.CA()
CERT_A = _CA.issue_cert("a.example.org").cert_chain_pems[0].bytes()
CERT_B = _CA.issue_cert("b.example.org").cert_chain_pems[0].bytes()


def _der(pem: bytes) -> bytes:
    import ssl

    return ssl.PEM_cert_to_DER_cert(pem.decode())


DER_A, DER_B = _der(CERT_A), _der(CERT_B)


@dataclass
class Revocations:
    """What the trust puller exposes to the authenticator: one frozenset, swapped whole."""

    revoked_jtis: frozenset[str] = field(default_factory=frozenset)


def issuer(*, revocations: bool) -> Issuer:
    return Issuer.model_validate(
        {
            "name": "cp",
            "issuer": ISS,
            "audiences": ["api"],
            "keys": [{"kid": "k1", "pem": PEM.decode()}],
            "workload_identities": True,
            "revocations": revocations,
        }
    )


def token(**claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISS, "aud": "api", "sub": f"spiffe://{TD}/svc/orders", "iat": now, "exp": now + 300}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, KEY, algorithm="ES256", headers={"kid": "k1"})


def request(tok: str, der: bytes | None, *, precomputed: bool = True) -> RequestContext:
    return RequestContext(
        method="GET",
        raw_target=b"/x",
        headers=[(b"authorization", f"Bearer {tok}".encode())],
        client_addr="127.0.0.1",
        request_id="r",
        now=time.time(),
        tls=der is not None,
        peer_cert_der=der,
        peer_cert_x5t=cert_thumbprint(der) if der is not None and precomputed else None,
    )


def run(authn: JwtAuthenticator, c: RequestContext) -> Verdict:
    return asyncio.run(authn.authenticate(c, None))


def reason(v: Verdict) -> Reason | None:
    return v.reason if isinstance(v, Deny) else None


def test_thumbprint_is_rfc8705_base64url_sha256() -> None:
    want = base64.urlsafe_b64encode(hashlib.sha256(DER_A).digest()).decode().rstrip("=")
    assert cert_thumbprint(DER_A) == want and "=" not in want and len(want) == 43


def test_bound_token_only_with_its_certificate() -> None:
    authn = JwtAuthenticator.build([issuer(revocations=False)], TD)
    tok = token(cnf={"x5t#S256": cert_thumbprint(DER_A)})
    for _ in range(2):  # miss, then hit
        assert reason(run(authn, request(tok, None))) is Reason.TOKEN_BINDING_MISMATCH
        assert reason(run(authn, request(tok, DER_B))) is Reason.TOKEN_BINDING_MISMATCH
        c = request(tok, DER_A)
        assert run(authn, c) is CONTINUE and c.identity is not None
        # a context without the precomputed thumbprint still compares the certificate itself
        assert run(authn, request(tok, DER_A, precomputed=False)) is CONTINUE
        assert reason(run(authn, request(tok, DER_B, precomputed=False))) is Reason.TOKEN_BINDING_MISMATCH


def test_unbound_token_is_unaffected() -> None:
    authn = JwtAuthenticator.build([issuer(revocations=False)], TD)
    tok = token()
    assert run(authn, request(tok, None)) is CONTINUE
    assert run(authn, request(tok, DER_B)) is CONTINUE


@pytest.mark.parametrize(
    "cnf",
    [
        "not-an-object",
        {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},  # DPoP-bound: not honoured as bearer
        {"x5t#S256": 12},
        {"x5t#S256": "short"},
    ],
)
def test_confirmation_we_cannot_check_is_refused(cnf: object) -> None:
    authn = JwtAuthenticator.build([issuer(revocations=False)], TD)
    assert reason(run(authn, request(token(cnf=cnf), DER_A))) is Reason.TOKEN_BINDING_MISMATCH


def test_revoked_jti_refused_on_a_cache_hit() -> None:
    revs = Revocations()
    authn = JwtAuthenticator.build([issuer(revocations=True)], TD, revocations=revs)
    tok, other = token(jti="j-1"), token(jti="j-2")
    assert run(authn, request(tok, None)) is CONTINUE  # cached now
    revs.revoked_jtis = frozenset({"j-1"})  # the puller swapped in a new document
    assert reason(run(authn, request(tok, None))) is Reason.TOKEN_REVOKED
    assert run(authn, request(other, None)) is CONTINUE
    assert (
        reason(run(authn, request(token(jti="j-1", sub=f"spiffe://{TD}/svc/x"), None)))
        is Reason.TOKEN_REVOKED
    )


def test_revocable_issuer_needs_jti_and_a_source() -> None:
    authn = JwtAuthenticator.build([issuer(revocations=True)], TD, revocations=Revocations())
    assert reason(run(authn, request(token(), None))) is Reason.TOKEN_MISSING_CLAIM
    with pytest.raises(ConfigError, match="trust document"):
        JwtAuthenticator.build([issuer(revocations=True)], TD)
    offline = JwtAuthenticator.build([issuer(revocations=True)], TD, revocations=UNCHECKED_REVOCATIONS)
    assert run(offline, request(token(jti="j"), None)) is CONTINUE  # knowingly unchecked (policy explain)


def test_issuer_without_revocations_ignores_the_list() -> None:
    authn = JwtAuthenticator.build([issuer(revocations=False)], TD, revocations=Revocations(frozenset({"j"})))
    assert run(authn, request(token(jti="j"), None)) is CONTINUE
