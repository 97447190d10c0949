"""RFC 8414 metadata, the state stores (memory and SQLite), and the pinned public surface."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from oauth_kit import AUDIENCES, ISSUER, NOW, Kit

import garrison.identity.oauth as oauth
from garrison.identity.oauth import MemoryOAuthState, ServerSettings, well_known_url
from garrison.identity.oauth.sql_state import SqlOAuthState


def test_metadata_document(kit: Kit) -> None:
    doc = kit.service.metadata.document()
    assert doc["issuer"] == ISSUER
    assert doc["token_endpoint"] == f"{ISSUER}/oauth2/token" and doc["jwks_uri"] == f"{ISSUER}/oauth2/jwks"
    assert doc["introspection_endpoint"] and doc["revocation_endpoint"]
    assert doc["grant_types_supported"] == [
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:token-exchange",
    ]
    assert doc["token_endpoint_auth_methods_supported"] == ["private_key_jwt", "tls_client_auth"]
    assert doc["tls_client_certificate_bound_access_tokens"] is True
    assert "none" not in doc["token_endpoint_auth_signing_alg_values_supported"]
    assert not any(a.startswith("HS") for a in doc["token_endpoint_auth_signing_alg_values_supported"])
    assert kit.service.metadata.paths == (
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    )


def test_well_known_url_inserts_before_the_issuer_path() -> None:
    assert (
        well_known_url("https://as.example/tenant1")
        == "https://as.example/.well-known/oauth-authorization-server/tenant1"
    )


@pytest.mark.parametrize(
    "issuer",
    ["http://as.example", "https://as.example?x=1", "https://as.example#f", "as.example"],
    ids=["http", "query", "fragment", "relative"],
)
def test_bad_issuers_are_refused(issuer: str) -> None:
    with pytest.raises(ValueError, match="issuer"):
        ServerSettings(issuer, AUDIENCES)


def test_http_issuer_only_when_insecure_is_asked_for() -> None:
    s = ServerSettings("http://127.0.0.1:8443", AUDIENCES, insecure_allow_http=True)
    assert s.token_endpoint == "http://127.0.0.1:8443/oauth2/token"


@pytest.fixture(params=["memory", "sqlite"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryOAuthState]:
    if request.param == "memory":
        yield MemoryOAuthState()
        return
    s = SqlOAuthState.open(tmp_path / "garrison.db")
    yield s  # type: ignore[misc]
    s.close()


def test_jti_is_single_use_until_it_expires(state: MemoryOAuthState) -> None:
    assert state.use_jti("c", "j", NOW + 10, NOW)
    assert not state.use_jti("c", "j", NOW + 10, NOW + 5)
    assert state.use_jti("other", "j", NOW + 10, NOW)
    assert state.use_jti("c", "j", NOW + 100, NOW + 11)  # forgotten after expiry


def test_revocations_expire(state: MemoryOAuthState) -> None:
    state.revoke("a", NOW + 10, NOW)
    state.revoke("b", NOW + 20, NOW)
    state.revoke("a", NOW + 5, NOW)  # an earlier expiry never shortens the entry
    assert state.is_revoked("a", NOW + 10) and state.revoked_jtis(NOW + 10) == {"a", "b"}
    assert state.revoked_jtis(NOW + 15) == {"b"} and not state.is_revoked("a", NOW + 15)


def test_sql_state_survives_a_reopen(tmp_path: Path) -> None:
    s = SqlOAuthState.open(tmp_path / "g.db")
    s.revoke("a", NOW + 10, NOW)
    s.use_jti("c", "j", NOW + 10, NOW)
    s.close()
    s = SqlOAuthState.open(tmp_path / "g.db")
    assert s.revoked_jtis(NOW) == {"a"} and not s.use_jti("c", "j", NOW + 10, NOW)
    s.close()


def test_protocols_are_satisfied(tmp_path: Path) -> None:
    s = SqlOAuthState.open(tmp_path / "g.db")
    for impl in (MemoryOAuthState(), s):
        assert isinstance(impl, oauth.ReplayStore)
        assert isinstance(impl, oauth.RevocationStore)
        assert isinstance(impl, oauth.SigningKeyStore)
    s.close()


def test_all_public_names_are_exported() -> None:
    public = {n for n in dir(oauth) if (not n.startswith("_") and n[0].isupper()) or n in oauth.__all__}
    modules = {
        "access_tokens",
        "client_auth",
        "client_credentials",
        "clients",
        "errors",
        "form",
        "grant",
        "introspection",
        "metadata",
        "revocation",
        "service",
        "signing_keys",
        "state",
        "targets",
        "token_exchange",
    }
    assert sorted(oauth.__all__) == sorted(set(oauth.__all__))
    assert {n for n in public if n not in modules} <= set(oauth.__all__)


def test_oauth_error_is_in_the_garrison_tree() -> None:
    from garrison.errors import IdentityError

    assert issubclass(oauth.OAuthError, IdentityError)
