"""Client authentication: RFC 7523 §3 private_key_jwt and RFC 8705 §2.1.2 tls_client_auth."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from oauth_kit import (
    ASSERTION_TYPE,
    GATEWAY,
    ISSUER,
    MESHY,
    NO_PEER,
    NOW,
    ORDERS,
    TOKEN_ENDPOINT,
    USERS,
    Client,
    Kit,
    p256,
    public_jwk,
    svid_cert,
    unsigned,
)

from garrison.errors import KeySetError
from garrison.identity.ca import SpiffeId
from garrison.identity.oauth import (
    AuthMethod,
    ClientAuthContext,
    ClientRegistration,
    ErrorCode,
    ErrorResponse,
    OAuthError,
    TokenResponse,
)
from garrison.identity.oauth.form import Form


def token_request(assertion: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **extra,
    }


def assert_invalid_client(kit: Kit, params: dict[str, str], ctx: ClientAuthContext = NO_PEER) -> None:
    r = kit.service.token_endpoint.handle(params, ctx, NOW)
    assert isinstance(r, ErrorResponse), r
    assert r.error is ErrorCode.INVALID_CLIENT and r.status == 401
    assert r.body() == {"error": "invalid_client", "error_description": "client authentication failed"}
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_valid_assertion_authenticates(kit: Kit) -> None:
    assert isinstance(kit.service.token_endpoint.handle(kit.orders.form(), NO_PEER, NOW), TokenResponse)


@pytest.mark.parametrize("aud", [ISSUER, TOKEN_ENDPOINT, [ISSUER]], ids=["issuer", "token-endpoint", "array"])
def test_assertion_audience_may_be_the_issuer_or_the_token_endpoint(kit: Kit, aud: object) -> None:
    r = kit.service.token_endpoint.handle(token_request(kit.orders.assertion(aud=aud)), NO_PEER, NOW)
    assert isinstance(r, TokenResponse), r


def test_assertion_without_kid_is_checked_against_the_registered_keys(kit: Kit) -> None:
    # kid is optional in RFC 7523; orders registered its key with kid "orders-1".
    assertion = kit.orders.assertion(headers={"kid": "something-else"})
    assert isinstance(
        kit.service.token_endpoint.handle(token_request(assertion), NO_PEER, NOW), TokenResponse
    )


def test_assertion_replay_is_refused(kit: Kit) -> None:
    assertion = kit.orders.assertion()
    assert isinstance(
        kit.service.token_endpoint.handle(token_request(assertion), NO_PEER, NOW), TokenResponse
    )
    assert_invalid_client(kit, token_request(assertion))


def test_same_jti_from_two_clients_is_not_a_replay(kit: Kit) -> None:
    a = kit.orders.assertion(jti="shared")
    b = kit.users.assertion(jti="shared")
    for assertion in (a, b):
        r = kit.service.token_endpoint.handle(token_request(assertion), NO_PEER, NOW)
        assert isinstance(r, TokenResponse), r


def test_replay_entries_are_forgotten_once_the_assertion_expired(kit: Kit) -> None:
    for i in range(50):
        kit.service.token_endpoint.handle(kit.orders.form(NOW + i), NO_PEER, NOW + i)
    assert len(kit.state._jtis) == 50
    kit.service.token_endpoint.handle(kit.orders.form(NOW + 1000), NO_PEER, NOW + 1000)
    assert len(kit.state._jtis) == 1  # bounded by exp + leeway


Case = Callable[[Client], str]
CASES: list[object] = [
    pytest.param(lambda c: c.assertion(aud="https://other-as.example"), id="should refuse wrong aud"),
    pytest.param(lambda c: c.assertion(aud=f"{ISSUER}/"), id="should compare aud exactly"),
    pytest.param(
        lambda c: c.assertion(exp=int(NOW) - 61, iat=int(NOW) - 120), id="should refuse an expired assertion"
    ),
    pytest.param(lambda c: c.assertion(exp=None), id="should refuse an assertion without exp"),
    pytest.param(lambda c: c.assertion(exp=int(NOW) + 365 * 86400), id="should refuse exp a year ahead"),
    pytest.param(
        lambda c: c.assertion(exp=int(NOW) + 600, iat=None), id="should refuse exp beyond the 5 min cap"
    ),
    pytest.param(lambda c: c.assertion(nbf=int(NOW) + 120), id="should refuse nbf in the future"),
    pytest.param(lambda c: c.assertion(iat=int(NOW) + 120), id="should refuse iat in the future"),
    pytest.param(lambda c: c.assertion(jti=None), id="should refuse an assertion without jti"),
    pytest.param(lambda c: c.assertion(key=p256()), id="should refuse an unregistered key"),
    pytest.param(lambda c: c.assertion(iss=USERS), id="should refuse iss other than the client"),
    pytest.param(lambda c: c.assertion(sub=USERS, iss=USERS), id="should refuse another client's name"),
    pytest.param(
        lambda c: unsigned(
            {"iss": c.client_id, "sub": c.client_id, "aud": ISSUER, "exp": int(NOW) + 60, "jti": "x"},
            {"alg": "none"},
        ),
        id="should refuse alg none",
    ),
    pytest.param(
        lambda c: unsigned(
            {"iss": c.client_id, "sub": c.client_id, "aud": ISSUER, "exp": int(NOW) + 60, "jti": "x"},
            {"alg": "nOnE"},
        ),
        id="should refuse alg nOnE",
    ),
    pytest.param(
        lambda c: __import__("oauth_kit").hs256_with_public_key(c),
        id="should refuse HS256 keyed with the public key",
    ),
    pytest.param(lambda c: c.assertion() + "." + c.assertion(), id="should refuse two JWTs"),
    pytest.param(lambda c: "not-a-jwt", id="should refuse garbage"),
]


@pytest.mark.parametrize("make", CASES)
def test_refused_assertions(kit: Kit, make: Case) -> None:
    assert_invalid_client(kit, token_request(make(kit.orders)))


def test_hs256_assertion_with_the_right_mac_is_still_refused(kit: Kit) -> None:
    import jwt

    token = jwt.encode(
        {"iss": ORDERS, "sub": ORDERS, "aud": ISSUER, "exp": int(NOW) + 60, "jti": "x"},
        "a-shared-secret-of-enough-length-32b",
        algorithm="HS256",
    )
    assert_invalid_client(kit, token_request(token))


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"client_assertion_type": "urn:other"}, id="should refuse another assertion type"),
        pytest.param({"client_assertion_type": ""}, id="should refuse a missing assertion type"),
        pytest.param({"client_id": USERS}, id="should refuse client_id other than sub"),
        pytest.param({"client_secret": "s"}, id="should refuse client_secret"),
    ],
)
def test_refused_assertion_parameters(kit: Kit, params: dict[str, str]) -> None:
    assert_invalid_client(kit, token_request(kit.orders.assertion(), **params))


def test_missing_credentials_are_invalid_client(kit: Kit) -> None:
    assert_invalid_client(kit, {"grant_type": "client_credentials"})


def test_unregistered_client_is_invalid_client(kit: Kit) -> None:
    stranger = Client("spiffe://example.org/svc/stranger")
    assert_invalid_client(kit, stranger.form())


def test_mtls_client_cannot_use_an_assertion_and_vice_versa(kit: Kit) -> None:
    assert_invalid_client(kit, Client(MESHY).form())
    assert_invalid_client(
        kit, {"grant_type": "client_credentials", "client_id": ORDERS}, ClientAuthContext(svid_cert(ORDERS))
    )


@pytest.mark.parametrize(
    ("client_id", "cert"),
    [
        pytest.param(MESHY, None, id="should refuse mtls without a certificate"),
        pytest.param(
            MESHY, lambda: svid_cert(GATEWAY), id="should refuse a certificate of another spiffe id"
        ),
        pytest.param(MESHY, lambda: svid_cert(MESHY + "/x"), id="should refuse a longer spiffe id"),
        pytest.param(MESHY, lambda: svid_cert(MESHY, NOW - 7200), id="should refuse an expired certificate"),
        pytest.param("", lambda: svid_cert(MESHY), id="should refuse mtls without client_id"),
    ],
)
def test_refused_mtls(kit: Kit, client_id: str, cert: Callable[[], object] | None) -> None:
    ctx = ClientAuthContext(cert() if cert else None)  # type: ignore[arg-type]
    assert_invalid_client(kit, {"grant_type": "client_credentials", "client_id": client_id}, ctx)


def test_authenticator_reports_the_detail_to_the_operator_only(kit: Kit) -> None:
    with pytest.raises(OAuthError) as e:
        kit.service.authenticator.authenticate(
            Form(token_request(kit.orders.assertion(aud="x"))), NO_PEER, NOW
        )
    assert "token_bad_audience" in str(e.value)
    assert e.value.response.description == "client authentication failed"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"jwks": ()}, ValueError, id="private_key_jwt needs a key"),
        pytest.param({"jwks": ({"kty": "oct", "k": "c2VjcmV0"},)}, KeySetError, id="symmetric key refused"),
        pytest.param({"audiences": frozenset()}, ValueError, id="an audience is required"),
        pytest.param({"default_audience": "users"}, ValueError, id="default audience must be allowed"),
        pytest.param({"grant_types": frozenset({"password"})}, ValueError, id="unknown grant type"),
        pytest.param({"scopes": frozenset({"a b"})}, ValueError, id="scope with a space"),
    ],
)
def test_bad_registrations_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    key = p256()
    base: dict[str, object] = {
        "scopes": frozenset({"s"}),
        "audiences": frozenset({"payments"}),
        "jwks": (public_jwk(key),),
    }
    base.update(kwargs)
    with pytest.raises(error):
        ClientRegistration(SpiffeId(ORDERS), AuthMethod.PRIVATE_KEY_JWT, **base)  # type: ignore[arg-type]


def test_private_jwk_is_refused_at_registration() -> None:
    from jwt.algorithms import ECAlgorithm

    private = dict(ECAlgorithm.to_jwk(p256(), as_dict=True))
    with pytest.raises(KeySetError, match="private"):
        ClientRegistration(
            SpiffeId(ORDERS), AuthMethod.PRIVATE_KEY_JWT, frozenset(), frozenset({"p"}), (private,)
        )
