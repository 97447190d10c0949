"""RFC 8693 token exchange: narrowing, act claim, refusals."""

from __future__ import annotations

import jwt
import pytest
from oauth_kit import ASSERTION_TYPE, GATEWAY, ISSUER, NO_PEER, NOW, ORDERS, Kit, make_kit, p256
from verify_kit import gateway_verify

from garrison.config.models import Issuer
from garrison.identity.keys import KeySet, VerificationKey
from garrison.identity.oauth import (
    ACCESS_TOKEN_TYPE,
    GRANT_TOKEN_EXCHANGE,
    ErrorCode,
    ErrorResponse,
    TokenResponse,
)
from garrison.identity.tokens import TokenVerifier

IDP = "https://idp.example.com"


def subject(kit: Kit, scope: str = "payments:read payments:write") -> str:
    r = kit.service.token_endpoint.handle(kit.orders.form(audience="payments", scope=scope), NO_PEER, NOW)
    assert isinstance(r, TokenResponse)
    return r.access_token


def exchange(
    kit: Kit, subject_token: str, client: str = "gateway", **params: str
) -> TokenResponse | ErrorResponse:
    c = getattr(kit, client)
    form = {
        "grant_type": GRANT_TOKEN_EXCHANGE,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": c.assertion(),
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": "payments",
        **params,
    }
    return kit.service.token_endpoint.handle({k: v for k, v in form.items() if v != "-"}, NO_PEER, NOW)


def claims(raw: str) -> dict[str, object]:
    return jwt.decode(raw, options={"verify_signature": False})


def test_exchange_narrows_scope_and_names_the_actor(kit: Kit) -> None:
    r = exchange(kit, subject(kit), scope="payments:read")
    assert isinstance(r, TokenResponse), r
    assert r.body()["issued_token_type"] == ACCESS_TOKEN_TYPE and r.body()["token_type"] == "Bearer"
    c = claims(r.access_token)
    assert c["sub"] == ORDERS and c["act"] == {"sub": GATEWAY} and c["client_id"] == GATEWAY
    assert c["scope"] == "payments:read" and c["aud"] == "payments"
    assert gateway_verify(r.access_token, kit.service.jwks(), NOW).sub == ORDERS


def test_exchange_without_scope_keeps_the_subject_scopes(kit: Kit) -> None:
    r = exchange(kit, subject(kit, "payments:read"))
    assert isinstance(r, TokenResponse) and claims(r.access_token)["scope"] == "payments:read"


def test_exchanged_token_never_outlives_the_subject(kit: Kit) -> None:
    sub_tok = subject(kit)
    c = kit.gateway.assertion(NOW + 200)
    r = kit.service.token_endpoint.handle(
        {
            "grant_type": GRANT_TOKEN_EXCHANGE,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": c,
            "subject_token": sub_tok,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": "payments",
        },
        NO_PEER,
        NOW + 200,
    )
    assert isinstance(r, TokenResponse) and r.expires_in == 100
    assert claims(r.access_token)["exp"] == claims(sub_tok)["exp"]


def test_chained_exchange_nests_act(kit: Kit) -> None:
    first = exchange(kit, subject(kit))
    assert isinstance(first, TokenResponse)
    second = exchange(kit, first.access_token)
    assert isinstance(second, TokenResponse)
    assert claims(second.access_token)["act"] == {"sub": GATEWAY, "act": {"sub": GATEWAY}}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        pytest.param({"scope": "payments:read admin"}, ErrorCode.INVALID_SCOPE, id="should refuse widening"),
        pytest.param(
            {"subject_token_type": "-"}, ErrorCode.INVALID_REQUEST, id="should require subject_token_type"
        ),
        pytest.param(
            {"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"},
            ErrorCode.INVALID_REQUEST,
            id="should refuse an id_token subject",
        ),
        pytest.param(
            {"actor_token_type": ACCESS_TOKEN_TYPE},
            ErrorCode.INVALID_REQUEST,
            id="should refuse actor_token_type without actor_token",
        ),
        pytest.param(
            {"actor_token": "x", "actor_token_type": ACCESS_TOKEN_TYPE},
            ErrorCode.INVALID_REQUEST,
            id="should refuse an actor_token",
        ),
        pytest.param(
            {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
            ErrorCode.INVALID_REQUEST,
            id="should refuse a refresh token request",
        ),
        pytest.param(
            {"audience": "inventory"}, ErrorCode.INVALID_TARGET, id="should refuse a target not allowed"
        ),
    ],
)
def test_refused_exchanges(kit: Kit, params: dict[str, str], code: ErrorCode) -> None:
    r = exchange(kit, subject(kit, "payments:read"), **params)
    assert isinstance(r, ErrorResponse) and r.error is code, r


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda k: "garbage", id="should refuse a garbage subject token"),
        pytest.param(lambda k: subject(make_kit()), id="should refuse a subject token of unknown keys"),
    ],
)
def test_invalid_subject_token_is_invalid_request(kit: Kit, bad: object) -> None:
    r = exchange(kit, bad(kit))  # type: ignore[operator]
    assert isinstance(r, ErrorResponse) and r.error is ErrorCode.INVALID_REQUEST


def test_revoked_subject_token_is_refused(kit: Kit) -> None:
    raw = subject(kit)
    kit.state.revoke(claims(raw)["jti"], NOW + 1000, NOW)  # type: ignore[arg-type]
    r = exchange(kit, raw)
    assert isinstance(r, ErrorResponse) and r.error is ErrorCode.INVALID_REQUEST


def test_a_client_not_allowed_to_exchange_is_refused(kit: Kit) -> None:
    r = exchange(kit, subject(kit), client="users")
    assert isinstance(r, ErrorResponse) and r.error is ErrorCode.UNAUTHORIZED_CLIENT


def idp_kit() -> tuple[Kit, object]:
    key = p256()
    keyset = KeySet([VerificationKey("idp-1", key.public_key(), frozenset({"ES256"}))])
    cfg = Issuer.model_validate(
        {"name": "idp", "issuer": IDP, "audiences": ["gateway"], "jwks_url": f"{IDP}/jwks", "typ": None}
    )
    kit = make_kit(external_verifiers={IDP: TokenVerifier(cfg, lambda: keyset)})
    return kit, key


def idp_token(key: object, sub: str) -> str:
    return jwt.encode(
        {
            "iss": IDP,
            "sub": sub,
            "aud": "gateway",
            "exp": int(NOW) + 600,
            "iat": int(NOW),
            "scope": "payments:read profile",
        },
        key,
        algorithm="ES256",  # type: ignore[arg-type]
        headers={"kid": "idp-1"},
    )


def test_user_token_of_a_configured_issuer_is_exchanged() -> None:
    kit, key = idp_kit()
    r = exchange(kit, idp_token(key, "alice"), scope="payments:read")
    assert isinstance(r, TokenResponse), r
    c = claims(r.access_token)
    assert c["sub"] == "alice" and c["act"] == {"sub": GATEWAY} and c["iss"] == ISSUER


def test_external_subject_cannot_become_a_workload() -> None:
    kit, key = idp_kit()
    r = exchange(kit, idp_token(key, ORDERS))
    assert isinstance(r, ErrorResponse) and r.error is ErrorCode.INVALID_REQUEST
