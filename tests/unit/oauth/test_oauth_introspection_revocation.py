"""RFC 7662 introspection and RFC 7009 revocation."""

from __future__ import annotations

import pytest
from oauth_kit import ASSERTION_TYPE, NO_PEER, NOW, ORDERS, Kit, make_kit

from garrison.identity.oauth import (
    INACTIVE,
    ErrorCode,
    ErrorResponse,
    IntrospectionResponse,
    RevocationResponse,
    TokenResponse,
)


def token(kit: Kit, now: float = NOW) -> str:
    r = kit.service.token_endpoint.handle(kit.orders.form(now, audience="payments"), NO_PEER, now)
    assert isinstance(r, TokenResponse)
    return r.access_token


def auth(kit: Kit, now: float = NOW, client: str = "users", **params: str) -> dict[str, str]:
    c = getattr(kit, client)
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": c.assertion(now), **params}


def introspect(kit: Kit, raw: str, now: float = NOW) -> IntrospectionResponse:
    r = kit.service.introspection.handle(auth(kit, now, token=raw), NO_PEER, now)
    assert isinstance(r, IntrospectionResponse), r
    return r


def revoke(
    kit: Kit, raw: str, now: float = NOW, client: str = "orders", **extra: str
) -> RevocationResponse | ErrorResponse:
    return kit.service.revocation.handle(auth(kit, now, client, token=raw, **extra), NO_PEER, now)


def test_active_token_fields(kit: Kit) -> None:
    raw = token(kit)
    body = introspect(kit, raw).body()
    assert body["active"] is True and body["token_type"] == "Bearer"
    assert body["client_id"] == body["sub"] == ORDERS and body["aud"] == "payments"
    assert {"scope", "iss", "exp", "iat", "jti"} <= set(body)
    assert "cnf" not in body


def other_issuer_token(kit: Kit) -> str:
    other = make_kit()
    return token(other)


@pytest.mark.parametrize(
    ("make", "at"),
    [
        pytest.param(lambda k: token(k), NOW + 301, id="should be inactive when expired"),
        pytest.param(lambda k: "garbage", NOW, id="should be inactive when unknown"),
        pytest.param(lambda k: token(k)[:-4] + "AAAA", NOW, id="should be inactive with a bad signature"),
        pytest.param(other_issuer_token, NOW, id="should be inactive from another issuer's keys"),
    ],
)
def test_inactive_token_is_only_active_false(kit: Kit, make: object, at: float) -> None:
    raw = make(kit)  # type: ignore[operator]
    r = introspect(kit, raw, at)
    assert r.body() == {"active": False} and r.status == 200 and r is INACTIVE


def test_revoked_token_is_inactive(kit: Kit) -> None:
    raw = token(kit)
    assert isinstance(revoke(kit, raw), RevocationResponse)
    assert introspect(kit, raw).body() == {"active": False}


def test_introspection_requires_an_authenticated_client(kit: Kit) -> None:
    r = kit.service.introspection.handle({"token": token(kit)}, NO_PEER, NOW)
    assert isinstance(r, ErrorResponse) and r.status == 401 and r.error is ErrorCode.INVALID_CLIENT


def test_introspection_requires_token(kit: Kit) -> None:
    r = kit.service.introspection.handle(auth(kit), NO_PEER, NOW)
    assert isinstance(r, ErrorResponse) and r.error is ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize("raw", ["garbage", "a.b.c", ""], ids=["garbage", "three-parts", "empty-is-missing"])
def test_revoking_an_unknown_token_is_200(kit: Kit, raw: str) -> None:
    r = revoke(kit, raw)
    if raw:
        assert isinstance(r, RevocationResponse) and r.status == 200 and r.body() == {}
    else:
        assert isinstance(r, ErrorResponse) and r.error is ErrorCode.INVALID_REQUEST


def test_revoked_jti_is_reported_to_gateways(kit: Kit) -> None:
    raw = token(kit)
    jti = introspect(kit, raw).body()["jti"]
    assert revoke(kit, raw).status == 200
    assert jti in kit.service.revoked_jtis(NOW)


def test_revocation_list_is_bounded_by_exp_plus_gateway_leeway(kit: Kit) -> None:
    raw = token(kit)
    revoke(kit, raw)
    assert len(kit.service.revoked_jtis(NOW + 300 + 60)) == 1  # a gateway still accepts it until here
    assert kit.service.revoked_jtis(NOW + 300 + 61) == frozenset()


def test_a_client_cannot_revoke_another_clients_token(kit: Kit) -> None:
    raw = token(kit)
    r = revoke(kit, raw, client="users")
    assert isinstance(r, ErrorResponse) and r.error is ErrorCode.UNAUTHORIZED_CLIENT
    assert kit.service.revoked_jtis(NOW) == frozenset()


def test_unknown_token_type_hint_is_unsupported_token_type(kit: Kit) -> None:
    r = revoke(kit, token(kit), token_type_hint="id_token")
    assert isinstance(r, ErrorResponse) and r.error is ErrorCode.UNSUPPORTED_TOKEN_TYPE
    assert revoke(kit, token(kit), token_type_hint="refresh_token").status == 200  # a hint, not a filter


def test_revocation_requires_an_authenticated_client(kit: Kit) -> None:
    r = kit.service.revocation.handle({"token": token(kit)}, NO_PEER, NOW)
    assert isinstance(r, ErrorResponse) and r.status == 401
