"""client_credentials (RFC 6749 §4.4) issuing RFC 9068 tokens, checked by independent verifiers."""

from __future__ import annotations

import base64
import time

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from oauth_kit import MESHY, NO_PEER, NOW, ORDERS, Kit, make_kit, svid_cert
from verify_kit import gateway_verifier, gateway_verify, pyjwt_decode

from garrison.errors import TokenError
from garrison.identity.oauth import (
    AccessTokenMinter,
    ClientAuthContext,
    ErrorCode,
    ErrorResponse,
    TokenResponse,
)
from garrison.reasons import Reason


def issue(kit: Kit, now: float = NOW, **params: str) -> TokenResponse:
    r = kit.service.token_endpoint.handle(kit.orders.form(now, **params), NO_PEER, now)
    assert isinstance(r, TokenResponse), r
    return r


def refuse(kit: Kit, params: dict[str, str], ctx: ClientAuthContext = NO_PEER) -> ErrorResponse:
    r = kit.service.token_endpoint.handle(params, ctx, NOW)
    assert isinstance(r, ErrorResponse), r
    return r


def test_token_validates_with_pyjwt_using_only_the_published_jwks() -> None:
    now = time.time()  # PyJWT reads the real clock
    kit = make_kit(now)
    r = issue(kit, now, audience="payments", scope="payments:read")
    claims = pyjwt_decode(r.access_token, kit.service.jwks(), "payments")
    assert claims["sub"] == claims["client_id"] == ORDERS
    assert claims["scope"] == "payments:read"
    header = jwt.get_unverified_header(r.access_token)
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256"
    assert header["kid"] in {k["kid"] for k in kit.service.jwks()["keys"]}


def test_token_validates_with_the_gateway_verifier_requiring_at_jwt(kit: Kit) -> None:
    r = issue(kit, audience="payments")
    vt = gateway_verify(r.access_token, kit.service.jwks(), NOW)
    assert vt.sub == ORDERS and vt.scopes == {"payments:read", "payments:write"}


def test_rfc9068_claims_and_response_shape(kit: Kit) -> None:
    r = issue(kit, audience="payments", scope="payments:write")
    body = r.body()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300 and body["scope"] == "payments:write"
    assert r.headers["Cache-Control"] == "no-store"
    claims = jwt.decode(r.access_token, options={"verify_signature": False})
    assert set(claims) == {"iss", "sub", "aud", "client_id", "iat", "exp", "jti", "scope"}
    assert claims["aud"] == "payments" and claims["exp"] - claims["iat"] == 300
    assert "cnf" not in claims  # private_key_jwt: not certificate-bound
    assert r.access_token not in repr(r)


def test_each_token_has_a_fresh_jti(kit: Kit) -> None:
    jtis = {
        jwt.decode(issue(kit, audience="payments").access_token, options={"verify_signature": False})["jti"]
        for _ in range(20)
    }
    assert len(jtis) == 20


def test_default_audience_when_the_client_has_exactly_one(kit: Kit) -> None:
    claims = jwt.decode(issue(kit).access_token, options={"verify_signature": False})
    assert claims["aud"] == "payments"


def test_resource_indicator_must_be_an_absolute_uri(kit: Kit) -> None:
    assert refuse(kit, kit.orders.form(resource="payments")).error is ErrorCode.INVALID_TARGET
    assert refuse(kit, kit.orders.form(resource="https://p.example/#x")).error is ErrorCode.INVALID_TARGET


@pytest.mark.parametrize(
    ("params", "code"),
    [
        pytest.param(
            {"scope": "payments:read admin"}, ErrorCode.INVALID_SCOPE, id="should refuse scope escalation"
        ),
        pytest.param(
            {"scope": "users:read"}, ErrorCode.INVALID_SCOPE, id="should refuse another client's scope"
        ),
        pytest.param({"scope": 'bad"scope'}, ErrorCode.INVALID_SCOPE, id="should refuse a malformed scope"),
        pytest.param(
            {"audience": "users"}, ErrorCode.INVALID_TARGET, id="should refuse an audience not allowed"
        ),
        pytest.param(
            {"audience": "nowhere"}, ErrorCode.INVALID_TARGET, id="should refuse an unknown audience"
        ),
        pytest.param(
            {"grant_type": "password"}, ErrorCode.UNSUPPORTED_GRANT_TYPE, id="should refuse other grants"
        ),
        pytest.param({"grant_type": ""}, ErrorCode.INVALID_REQUEST, id="should refuse a missing grant_type"),
    ],
)
def test_refused_requests(kit: Kit, params: dict[str, str], code: ErrorCode) -> None:
    r = refuse(kit, kit.orders.form(**params))
    assert r.error is code and r.status == 400


def test_two_audiences_are_ambiguous(kit: Kit) -> None:
    params = {**kit.gateway.form(), "audience": ["payments", "users"]}
    r = kit.service.token_endpoint.handle(params, NO_PEER, NOW)  # type: ignore[arg-type]
    assert isinstance(r, ErrorResponse) and r.error is ErrorCode.INVALID_TARGET


def test_repeated_parameter_is_invalid_request(kit: Kit) -> None:
    params = {**kit.orders.form(), "scope": ["payments:read", "payments:write"]}
    r = kit.service.token_endpoint.handle(params, NO_PEER, NOW)  # type: ignore[arg-type]
    assert isinstance(r, ErrorResponse) and r.error is ErrorCode.INVALID_REQUEST


def test_mtls_client_gets_a_certificate_bound_token(kit: Kit) -> None:
    cert = svid_cert(MESHY)
    r = kit.service.token_endpoint.handle(
        {"grant_type": "client_credentials", "client_id": MESHY}, ClientAuthContext(cert), NOW
    )
    assert isinstance(r, TokenResponse), r
    claims = jwt.decode(r.access_token, options={"verify_signature": False})
    # RFC 8705 §3.1: base64url (no padding) of SHA-256 over the DER certificate.
    expected = base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA256())).rstrip(b"=").decode()
    assert claims["cnf"] == {"x5t#S256": expected} and "=" not in expected
    assert claims["sub"] == MESHY and claims["aud"] == "inventory"


def test_mtls_with_a_certificate_of_another_spiffe_id_is_invalid_client(kit: Kit) -> None:
    r = refuse(
        kit, {"grant_type": "client_credentials", "client_id": MESHY}, ClientAuthContext(svid_cert(ORDERS))
    )
    assert r.error is ErrorCode.INVALID_CLIENT and r.status == 401


def test_gateway_refuses_a_token_for_another_audience(kit: Kit) -> None:
    r = issue(kit, audience="payments")
    verifier = gateway_verifier(kit.service.jwks(), audiences=frozenset({"users"}))  # a sidecar for `users`
    with pytest.raises(TokenError) as e:
        verifier.verify(r.access_token, NOW)
    assert e.value.reason is Reason.TOKEN_BAD_AUDIENCE


def test_expired_token_is_refused_by_the_gateway_after_its_leeway(kit: Kit) -> None:
    r = issue(kit, audience="payments")
    with pytest.raises(TokenError) as e:
        gateway_verify(r.access_token, kit.service.jwks(), NOW + 300 + 61)
    assert e.value.reason is Reason.TOKEN_EXPIRED


def test_minter_refuses_a_non_positive_ttl(kit: Kit) -> None:
    with pytest.raises(ValueError, match="ttl"):
        AccessTokenMinter(kit.service.ring, "https://x.example", 0)
