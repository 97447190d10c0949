"""principal: ARCHITECTURE §9 — a workload is its SPIFFE ID in our trust domain, a user is iss#sub."""

from __future__ import annotations

from typing import Any

import pytest

from garrison.identity.principal import identity_from_token, workload_id
from garrison.identity.tokens import VerifiedToken

TD = "prod.example"


def vt(sub: str, **claims: Any) -> VerifiedToken:
    c = {"iss": "https://idp.example.com", "sub": sub, **claims}
    return VerifiedToken(c, "corp", "https://idp.example.com", sub, 2e9, frozenset({"read"}), "k1", "ES256")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("spiffe://prod.example/svc/orders", id="svc"),
        pytest.param("spiffe://prod.example/ns/default/sa/api", id="namespaced"),
        pytest.param("spiffe://prod.example/a.b-c_D9", id="allowed-punctuation"),
        pytest.param("spiffe://prod.example/..a/.b", id="dots-inside-segments"),
        pytest.param("spiffe://prod.example/" + "a" * (2048 - 22), id="2048-bytes"),
    ],
)
def test_valid_workload_ids_in_our_trust_domain(value: str) -> None:
    assert workload_id(value, TD) == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("spiffe://other.example/svc/orders", id="foreign-trust-domain"),
        pytest.param("spiffe://prod.example.evil/svc/orders", id="trust-domain-suffix"),
        pytest.param("spiffe://Prod.Example/svc/orders", id="upper-case-trust-domain"),
        pytest.param("SPIFFE://prod.example/svc/orders", id="upper-case-scheme"),
        pytest.param("https://prod.example/svc/orders", id="https-scheme"),
        pytest.param("spiffe://prod.example", id="no-path"),
        pytest.param("spiffe://prod.example/", id="root-path"),
        pytest.param("spiffe://prod.example/svc/", id="trailing-slash"),
        pytest.param("spiffe://prod.example//svc", id="empty-segment"),
        pytest.param("spiffe://prod.example/svc/./orders", id="dot-segment"),
        pytest.param("spiffe://prod.example/svc/../admin", id="dot-dot-segment"),
        pytest.param("spiffe://prod.example/svc/orders?x=1", id="query"),
        pytest.param("spiffe://prod.example/svc/orders#frag", id="fragment"),
        pytest.param("spiffe://prod.example/svc/%6Frders", id="percent-encoded"),
        pytest.param("spiffe://prod.example/svc/or ders", id="space"),
        pytest.param("spiffe://user@prod.example/svc/orders", id="userinfo"),
        pytest.param("spiffe://prod.example:443/svc/orders", id="port"),
        pytest.param("spiffe://prod.example/" + "a" * (2049 - 22), id="2049-bytes"),
        pytest.param(["spiffe://prod.example/svc/orders"], id="not-a-string"),
    ],
)
def test_invalid_or_foreign_ids_are_not_workloads(value: object) -> None:
    assert workload_id(value, TD) is None


def test_a_user_token_is_issuer_hash_subject() -> None:
    ident = identity_from_token(vt("alice"), TD)
    assert (ident.principal, ident.kind, ident.issuer, ident.subject, ident.method) == (
        "https://idp.example.com#alice",
        "user",
        "corp",
        "alice",
        "jwt",
    )
    assert ident.scopes == {"read"}
    assert ident.expires_at == 2e9
    assert ident.claims["sub"] == "alice"


def test_a_workload_token_is_its_spiffe_id() -> None:
    ident = identity_from_token(vt("spiffe://prod.example/svc/billing"), TD, workloads=True)
    assert (ident.principal, ident.kind, ident.subject) == (
        "spiffe://prod.example/svc/billing",
        "workload",
        "spiffe://prod.example/svc/billing",
    )


def test_a_spiffe_sub_from_an_issuer_not_trusted_for_workloads_is_a_user() -> None:
    ident = identity_from_token(vt("spiffe://prod.example/svc/billing"), TD)
    assert ident.kind == "user"


def test_client_id_never_names_a_workload() -> None:
    """A user token obtained through client X is the user's, not X's."""
    ident = identity_from_token(
        vt("service-account-123", client_id="spiffe://prod.example/svc/billing"), TD, workloads=True
    )
    assert (ident.principal, ident.kind) == ("https://idp.example.com#service-account-123", "user")


def test_a_foreign_spiffe_sub_is_a_user_of_that_issuer() -> None:
    ident = identity_from_token(vt("spiffe://other.example/svc/billing"), TD)
    assert ident.kind == "user"
    assert ident.principal == "https://idp.example.com#spiffe://other.example/svc/billing"
