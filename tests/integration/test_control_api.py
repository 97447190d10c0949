"""The control-plane HTTP API over real mTLS: SVIDs, admin, OAuth2, trust distribution, bad input."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.routing import Route

from garrison.control.openapi import documented_operations
from garrison.identity.ca import SvidError
from garrison.identity.ca.certs import serial_hex
from garrison.reasons import Reason
from support.control import ControlPlaneThread, Svid, key_pem, make_csr, write_credentials


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneThread]:
    with ControlPlaneThread(tmp_path_factory.mktemp("cp")) as running:
        yield running


@pytest.fixture(scope="module")
def admin_svid(cp: ControlPlaneThread) -> Svid:
    return cp.issue_svid(cp.admin_id)


def err(r: httpx.Response, reason: Reason, status: int | None = None) -> dict[str, Any]:
    """Assert a ``/v1`` error answer: status, code, fixed message, JSON, no traceback."""
    assert r.status_code == (status or reason.status), r.text
    assert r.headers["content-type"] == "application/json"
    assert "Traceback" not in r.text and 'File "' not in r.text
    doc: dict[str, Any] = r.json()
    assert doc["error"] == reason.value
    assert doc["message"] == reason.message
    return doc


def sid(cp: ControlPlaneThread, name: str) -> str:
    return cp.spiffe_id(f"svc/{name}-{uuid.uuid4().hex[:8]}")


# -- public documents -------------------------------------------------------------------------------
def test_healthz_headers(cp: ControlPlaneThread) -> None:
    with cp.client() as c:
        r = c.get("/healthz")
    assert r.json() == {"status": "ok"}
    assert r.headers["cache-control"] == "no-store"
    assert "server" not in r.headers and "date" in r.headers


def test_metadata_and_jwks(cp: ControlPlaneThread) -> None:
    with cp.client() as c:
        meta = c.get("/.well-known/oauth-authorization-server").json()
        oidc = c.get("/.well-known/openid-configuration").json()
        jwks = c.get("/oauth2/jwks")
    assert meta == oidc
    assert meta["issuer"] == cp.base_url
    assert meta["token_endpoint"] == f"{cp.base_url}/oauth2/token"
    assert meta["jwks_uri"] == f"{cp.base_url}/oauth2/jwks"
    keys = jwks.json()["keys"]
    assert keys and all("d" not in k for k in keys)  # public halves only
    assert "max-age" in jwks.headers["cache-control"]


def test_openapi_documents_exactly_the_served_routes(cp: ControlPlaneThread) -> None:
    with cp.client() as c:
        r = c.get("/openapi.json")
    doc = json.loads(r.content)
    assert doc["openapi"].startswith("3.1")
    assert cp.server.app is not None
    routes = [r for r in cp.server.app.routes if isinstance(r, Route)]
    served = {(m, r.path) for r in routes for m in r.methods or () if m != "HEAD"}
    assert served == documented_operations(doc)
    assert ("LIST", "/v1/svids") in served and ("LIST", "/v1/clients") in served


def test_unknown_path_and_wrong_method(cp: ControlPlaneThread) -> None:
    with cp.client() as c:
        err(c.get("/v1/nothing-here"), Reason.NOT_FOUND)
        r = c.delete("/v1/trust")
    err(r, Reason.METHOD_NOT_ALLOWED)
    assert "GET" in r.headers["allow"]


def test_list_method_works_with_curl(cp: ControlPlaneThread) -> None:
    out = subprocess.run(
        ["curl", "-sS", "-X", "LIST", "--cacert", str(cp.ca_file),
         "-H", f"Authorization: Bearer {cp.admin_token}", f"{cp.base_url}/v1/svids"],
        capture_output=True, text=True, timeout=20, check=True,
    )  # fmt: skip
    svids = json.loads(out.stdout)["svids"]
    assert any(s["spiffe_id"].endswith("/garrison/control-plane") for s in svids)


# -- join tokens and SVIDs ----------------------------------------------------------------------------
def test_join_token_gives_an_svid_that_openssl_verifies(cp: ControlPlaneThread, tmp_path: Path) -> None:
    svid = cp.issue_svid(sid(cp, "orders"))
    cert = svid.certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [svid.spiffe_id]
    assert serial_hex(cert) == svid.serial
    (tmp_path / "leaf.pem").write_text(
        svid.chain_pem.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )
    out = subprocess.run(
        ["openssl", "verify", "-CAfile", str(cp.ca_file), "-untrusted", str(svid.cert_file),
         str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert out.returncode == 0 and ": OK" in out.stdout, out.stdout + out.stderr
    assert svid.bundle_pem == cp.ca_file.read_text()


def test_should_fail_because_the_join_token_was_already_used(cp: ControlPlaneThread) -> None:
    ident = sid(cp, "replay")
    token = cp.join_token(ident)
    with cp.client() as c:
        assert (
            c.post("/v1/svids/join", json={"join_token": token, "csr": make_csr(ident)[1]}).status_code == 201
        )
        doc = err(c.post("/v1/svids/join", json={"join_token": token, "csr": make_csr(ident)[1]}),
                  Reason.JOIN_TOKEN_INVALID)  # fmt: skip
    assert "detail" not in doc  # one public answer, whatever failed


def test_should_fail_because_the_join_token_expired(cp: ControlPlaneThread) -> None:
    ident = sid(cp, "late")
    token = cp.plane.ca.create_join_token(ident, ttl=10, now=time.time() - 60)
    with cp.client() as c:
        err(
            c.post("/v1/svids/join", json={"join_token": token, "csr": make_csr(ident)[1]}),
            Reason.JOIN_TOKEN_INVALID,
        )


def test_should_fail_because_the_csr_names_another_identity(cp: ControlPlaneThread) -> None:
    token = cp.join_token(sid(cp, "meant"))
    before = len(cp.plane.store.list_svids(spiffe_id=cp.admin_id))
    with cp.client() as c:
        r = c.post("/v1/svids/join", json={"join_token": token, "csr": make_csr(cp.admin_id)[1]})
    err(r, Reason.JOIN_TOKEN_INVALID)
    assert len(cp.plane.store.list_svids(spiffe_id=cp.admin_id)) == before  # nothing was signed


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(
            {"join_token": "gjt_x", "csr": "not a csr"}, Reason.JOIN_TOKEN_INVALID, id="malformed-token"
        ),
        pytest.param({"csr": "x"}, Reason.VALIDATION_FAILED, id="missing-join-token"),
        pytest.param({"join_token": 7, "csr": "x"}, Reason.VALIDATION_FAILED, id="token-not-a-string"),
        pytest.param({"join_token": "a", "csr": "b", "x": 1}, Reason.VALIDATION_FAILED, id="unknown-field"),
        pytest.param([1, 2], Reason.VALIDATION_FAILED, id="not-an-object"),
    ],
)
def test_join_refuses_bad_bodies(cp: ControlPlaneThread, body: Any, reason: Reason) -> None:
    with cp.client() as c:
        err(c.post("/v1/svids/join", json=body), reason)


def test_join_with_a_garbage_csr_is_svid_refused(cp: ControlPlaneThread) -> None:
    token = cp.join_token(sid(cp, "garbage"))
    with cp.client() as c:
        doc = err(c.post("/v1/svids/join", json={"join_token": token, "csr": "-----BEGIN nonsense"}),
                  Reason.SVID_REFUSED)  # fmt: skip
    assert "CSR" in doc["detail"]


def test_renewal_with_the_current_svid(cp: ControlPlaneThread) -> None:
    svid = cp.issue_svid(sid(cp, "renew"))
    with cp.client(svid) as c:
        r = c.post("/v1/svids/renew", json={"csr": make_csr(svid.spiffe_id)[1]})
    assert r.status_code == 201, r.text
    assert r.json()["spiffe_id"] == svid.spiffe_id and r.json()["serial"] != svid.serial


def test_renewal_refuses_a_csr_for_another_identity(cp: ControlPlaneThread) -> None:
    svid = cp.issue_svid(sid(cp, "renew-other"))
    with cp.client(svid) as c:
        doc = err(c.post("/v1/svids/renew", json={"csr": make_csr(cp.admin_id)[1]}), Reason.SVID_REFUSED, 403)
    assert "CSR is for" in doc["detail"]


def test_renewal_without_a_client_certificate_is_401(cp: ControlPlaneThread) -> None:
    with cp.client() as c:
        err(c.post("/v1/svids/renew", json={"csr": make_csr(sid(cp, "x"))[1]}), Reason.CLIENT_CERT_REQUIRED)


def test_renewal_with_a_revoked_svid_is_refused(cp: ControlPlaneThread) -> None:
    svid = cp.issue_svid(sid(cp, "revoked"))
    with cp.client() as c:
        assert (
            c.post("/v1/revocations", json={"serial": svid.serial}, headers=cp.admin_headers).status_code
            == 200
        )
    with cp.client(svid) as c:
        # Refused before the handler runs: a revoked SVID fails on every control-plane endpoint.
        err(c.post("/v1/svids/renew", json={"csr": make_csr(svid.spiffe_id)[1]}), Reason.SVID_REVOKED)
        err(c.get("/v1/trust"), Reason.SVID_REVOKED)
    # The library refuses it too, had the middleware been bypassed.
    with pytest.raises(SvidError, match="revoked"):
        cp.plane.ca.renew(make_csr(svid.spiffe_id)[1], [svid.certificate])


def test_renewal_with_an_expired_svid_is_refused_at_the_handshake(
    cp: ControlPlaneThread, tmp_path: Path
) -> None:
    ident = sid(cp, "expired")
    key, csr = make_csr(ident)
    old = cp.plane.ca.issue(csr, ttl=60, now=time.time() - 3600)
    files = write_credentials(tmp_path, old.chain_pem, key_pem(key))
    with pytest.raises(httpx.TransportError), cp.client(files) as c:
        c.post("/v1/svids/renew", json={"csr": make_csr(ident)[1]})
    assert cp.plane.store.list_svids(spiffe_id=ident, valid_at=time.time()) == []


# -- admin authorization ----------------------------------------------------------------------------
ADMIN_CALLS = [
    pytest.param("LIST", "/v1/svids", None, id="list-svids"),
    pytest.param("GET", "/v1/clients", None, id="get-clients"),
    pytest.param("POST", "/v1/join-tokens", {"spiffe_id": "spiffe://test.local/svc/x"}, id="join-token"),
    pytest.param("POST", "/v1/revocations", {"serial": "ab"}, id="revoke"),
    pytest.param("PUT", "/v1/clients", {"client_id": "spiffe://test.local/svc/x"}, id="put-client"),
    pytest.param("DELETE", "/v1/clients?client_id=spiffe://test.local/svc/x", None, id="delete-client"),
    pytest.param("POST", "/v1/signing-keys/rotate", None, id="rotate"),
    pytest.param("POST", "/v1/svids", {"csr": "x"}, id="issue"),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_endpoints_refuse_callers_without_admin_credentials(
    cp: ControlPlaneThread, method: str, path: str, body: Any
) -> None:
    workload = cp.issue_svid(sid(cp, "not-admin"))
    with cp.client() as anon, cp.client(workload) as svc:
        err(anon.request(method, path, json=body), Reason.ADMIN_REQUIRED)
        err(anon.request(method, path, json=body, headers={"Authorization": "Bearer gat_wrong"}),
            Reason.ADMIN_REQUIRED)  # fmt: skip
        err(anon.request(method, path, json=body, headers={"Authorization": f"Basic {cp.admin_token}"}),
            Reason.ADMIN_REQUIRED)  # fmt: skip
        err(svc.request(method, path, json=body), Reason.ADMIN_REQUIRED)
        # A wrong token is refused even when an (unprivileged) certificate comes with it.
        err(
            svc.request(method, path, json=body, headers={"Authorization": "Bearer nope"}),
            Reason.ADMIN_REQUIRED,
        )


def test_admin_svid_is_accepted_until_revoked(cp: ControlPlaneThread) -> None:
    admin = cp.issue_svid(cp.admin_id)
    with cp.client(admin) as c:
        r = c.post("/v1/join-tokens", json={"spiffe_id": sid(cp, "by-admin-svid")})
        assert r.status_code == 201, r.text
        assert r.json()["join_token"].startswith("gjt_")
        assert c.request("LIST", "/v1/clients").status_code == 200
    with cp.client() as c:
        assert c.post(
            "/v1/revocations", json={"serial": admin.serial.upper()}, headers=cp.admin_headers
        ).json() == {"revoked": [admin.serial]}
    with cp.client(admin) as c:
        err(c.request("LIST", "/v1/clients"), Reason.SVID_REVOKED)
    assert cp.plane.is_admin_certificate(admin.certificate) is None  # and the admin check itself agrees
    records = [json.loads(line) for line in cp.audit_path.read_text().splitlines()]
    assert any(r["action"] == "join_token.create" and r["actor"] == cp.admin_id for r in records)


def test_join_token_request_validation(cp: ControlPlaneThread) -> None:
    with cp.client(headers=cp.admin_headers) as c:
        doc = err(
            c.post("/v1/join-tokens", json={"spiffe_id": "spiffe://other.td/svc/x"}), Reason.VALIDATION_FAILED
        )
        assert "trust domain" in doc["detail"]
        err(
            c.post("/v1/join-tokens", json={"spiffe_id": sid(cp, "t"), "ttl_seconds": 10**9}),
            Reason.VALIDATION_FAILED,
        )
        err(
            c.post("/v1/join-tokens", json={"spiffe_id": sid(cp, "t"), "ttl_seconds": True}),
            Reason.VALIDATION_FAILED,
        )
        r = c.post("/v1/join-tokens", json={"spiffe_id": sid(cp, "t"), "ttl_seconds": 30})
    assert r.status_code == 201 and r.json()["expires_at"] == pytest.approx(time.time() + 30, abs=5)
    assert r.headers["cache-control"] == "no-store"


def test_admin_issuance_with_server_names(cp: ControlPlaneThread) -> None:
    ident = sid(cp, "server")
    with cp.client(headers=cp.admin_headers) as c:
        r = c.post("/v1/svids", json={"csr": make_csr(ident)[1], "server_names": ["api.test", "127.0.0.2"]})
        bad = c.post("/v1/svids", json={"csr": make_csr(ident)[1], "server_names": "api.test"})
    assert r.status_code == 201, r.text
    leaf = x509.load_pem_x509_certificate(r.json()["chain_pem"].encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.test"]
    err(bad, Reason.VALIDATION_FAILED)


# -- revocation and the trust document ------------------------------------------------------------------
def test_revocation_by_serial_and_by_spiffe_id_reaches_the_trust_document(cp: ControlPlaneThread) -> None:
    one = cp.issue_svid(sid(cp, "rev-serial"))
    ident = sid(cp, "rev-id")
    a, b = cp.issue_svid(ident), cp.issue_svid(ident)
    with cp.client(headers=cp.admin_headers) as c:
        assert c.post("/v1/revocations", json={"serial": one.serial, "reason": "key leaked"}).json() == {
            "revoked": [one.serial]
        }
        assert sorted(c.post("/v1/revocations", json={"spiffe_id": ident}).json()["revoked"]) == sorted(
            [a.serial, b.serial]
        )
        err(c.post("/v1/revocations", json={"serial": one.serial}), Reason.NOT_FOUND)  # already revoked
        err(c.post("/v1/revocations", json={"serial": "zz"}), Reason.VALIDATION_FAILED)
        err(c.post("/v1/revocations", json={"serial": "ab", "spiffe_id": ident}), Reason.VALIDATION_FAILED)
        trust = c.get("/v1/trust").json()
        listed = c.get("/v1/svids", params={"spiffe_id": ident}).json()["svids"]
        valid = c.get("/v1/svids", params={"spiffe_id": ident, "valid": "true"}).json()["svids"]
    assert one.serial in trust["revoked_serials"]  # the ID's SVIDs: one revoked_ids entry instead
    assert {a.serial, b.serial}.isdisjoint(trust["revoked_serials"])
    assert [e["spiffe_id"] for e in trust["revoked_ids"]] == [ident]
    assert trust["trust_domain"] == cp.trust_domain and trust["bundle"]["keys"]
    assert len(listed) == 2 and all(s["revoked_at"] is not None for s in listed)
    assert valid == []


# -- OAuth clients and tokens ------------------------------------------------------------------------
def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {**doc, "kid": "k1", "alg": "ES256", "use": "sig"}


def assertion(cp: ControlPlaneThread, key: Any, client_id: str, **over: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": f"{cp.base_url}/oauth2/token", "iat": now,
              "exp": now + 60, "jti": uuid.uuid4().hex, **over}  # fmt: skip
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})


def form(cp: ControlPlaneThread, key: Any, client_id: str, **over: Any) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion(cp, key, client_id, **over),
    }


@pytest.fixture(scope="module")
def jwt_client(cp: ControlPlaneThread) -> tuple[str, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cid = cp.spiffe_id("svc/jwt-client")
    reg = {"client_id": cid, "auth_method": "private_key_jwt", "scopes": ["read", "write"],
           "audiences": [cp.spiffe_id("svc/orders")], "jwks": [public_jwk(key)]}  # fmt: skip
    with cp.client(headers=cp.admin_headers) as c:
        assert c.put("/v1/clients", json=reg).status_code in (200, 201)
    return cid, key


def test_client_registration_lifecycle(cp: ControlPlaneThread) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cid = sid(cp, "lifecycle")
    reg = {"client_id": cid, "auth_method": "private_key_jwt", "scopes": ["read"],
           "audiences": [cp.spiffe_id("svc/orders")], "jwks": [public_jwk(key)]}  # fmt: skip
    with cp.client(headers=cp.admin_headers) as c:
        created = c.put("/v1/clients", json=reg)
        replaced = c.put("/v1/clients", json={**reg, "scopes": ["read", "write"]})
        one = c.get("/v1/clients", params={"client_id": cid})
        listed = c.request("LIST", "/v1/clients")
        gone = c.delete("/v1/clients", params={"client_id": cid})
        again = c.delete("/v1/clients", params={"client_id": cid})
        missing = c.get("/v1/clients", params={"client_id": cid})
        bad = c.put("/v1/clients", json={**reg, "auth_method": "client_secret_basic"})
        private = c.put(
            "/v1/clients", json={**reg, "jwks": [json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))]}
        )
    assert created.status_code == 201 and replaced.status_code == 200
    assert one.json()["clients"][0]["scopes"] == ["read", "write"]
    assert cid in [r["client_id"] for r in listed.json()["clients"]]
    assert gone.status_code == 204 and gone.content == b""
    err(again, Reason.NOT_FOUND)
    err(missing, Reason.NOT_FOUND)
    assert "auth_method" in err(bad, Reason.VALIDATION_FAILED)["detail"]
    err(private, Reason.VALIDATION_FAILED)
    actions = [json.loads(line)["action"] for line in cp.audit_path.read_text().splitlines()]
    assert actions.count("client.register") >= 2 and "client.remove" in actions


def test_private_key_jwt_token_validates_with_the_jwks_alone(
    cp: ControlPlaneThread, jwt_client: tuple[str, Any]
) -> None:
    cid, key = jwt_client
    aud = cp.spiffe_id("svc/orders")
    with cp.client() as c:
        r = c.post("/oauth2/token", data={**form(cp, key, cid), "scope": "read"})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    token = r.json()["access_token"]
    jwks = jwt.PyJWKClient(f"{cp.base_url}/oauth2/jwks", ssl_context=cp.ssl_context())
    claims = jwt.decode(
        token,
        jwks.get_signing_key_from_jwt(token).key,
        algorithms=["ES256"],
        audience=aud,
        issuer=cp.base_url,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"], "strict_aud": True},
    )
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    assert claims["sub"] == cid and claims["client_id"] == cid and claims["scope"] == "read"
    assert "cnf" not in claims


@pytest.mark.parametrize(
    "over",
    [
        pytest.param({"aud": "https://elsewhere.example/oauth2/token"}, id="wrong-aud"),
        pytest.param({"exp": int(time.time()) - 600, "iat": int(time.time()) - 700}, id="expired"),
        pytest.param({"iss": "spiffe://test.local/svc/someone-else"}, id="wrong-iss"),
    ],
)
def test_should_fail_because_the_assertion_is_not_acceptable(
    cp: ControlPlaneThread, jwt_client: tuple[str, Any], over: dict[str, Any]
) -> None:
    cid, key = jwt_client
    with cp.client() as c:
        r = c.post("/oauth2/token", data=form(cp, key, cid, **over))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert "access_token" not in r.text


def test_should_fail_because_the_assertion_is_replayed(
    cp: ControlPlaneThread, jwt_client: tuple[str, Any]
) -> None:
    cid, key = jwt_client
    data = form(cp, key, cid)
    with cp.client() as c:
        assert c.post("/oauth2/token", data=data).status_code == 200
        r = c.post("/oauth2/token", data=data)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_tls_client_auth_token_is_bound_to_the_certificate(cp: ControlPlaneThread) -> None:
    svid = cp.issue_svid(cp.spiffe_id("svc/mtls-client"))
    reg = {"client_id": svid.spiffe_id, "auth_method": "tls_client_auth", "scopes": ["read"],
           "audiences": [cp.spiffe_id("svc/billing")]}  # fmt: skip
    with cp.client(headers=cp.admin_headers) as c:
        assert c.put("/v1/clients", json=reg).status_code in (200, 201)
    with cp.client(svid) as c:
        r = c.post("/oauth2/token", data={"grant_type": "client_credentials", "client_id": svid.spiffe_id})
    with cp.client() as c:  # the same client_id without its certificate
        anon = c.post("/oauth2/token", data={"grant_type": "client_credentials", "client_id": svid.spiffe_id})
    assert r.status_code == 200, r.text
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    thumb = base64.urlsafe_b64encode(hashlib.sha256(svid.certificate.public_bytes(Encoding.DER)).digest())
    assert claims["cnf"] == {"x5t#S256": thumb.rstrip(b"=").decode()}
    assert anon.status_code == 401 and anon.json()["error"] == "invalid_client"


def test_a_revoked_svid_gets_no_token_by_tls_client_auth(cp: ControlPlaneThread) -> None:
    svid = cp.issue_svid(cp.spiffe_id("svc/revoked-mtls-client"))
    reg = {"client_id": svid.spiffe_id, "auth_method": "tls_client_auth", "scopes": ["read"],
           "audiences": [cp.spiffe_id("svc/billing")]}  # fmt: skip
    grant = {"grant_type": "client_credentials", "client_id": svid.spiffe_id}
    with cp.client(headers=cp.admin_headers) as c:
        assert c.put("/v1/clients", json=reg).status_code in (200, 201)
    with cp.client(svid) as c:
        assert c.post("/oauth2/token", data=grant).status_code == 200
    cp.plane.ca.revoke_serial(svid.serial)
    with cp.client(svid) as c:
        r = c.post("/oauth2/token", data=grant)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    assert "access_token" not in r.text


def test_introspection_and_revocation(cp: ControlPlaneThread, jwt_client: tuple[str, Any]) -> None:
    cid, key = jwt_client
    with cp.client() as c:
        token = c.post("/oauth2/token", data=form(cp, key, cid)).json()["access_token"]
        active = c.post("/oauth2/introspect", data={**form(cp, key, cid), "token": token}).json()
        unknown = c.post("/oauth2/revoke", data={**form(cp, key, cid), "token": "not-a-token"})
        revoked = c.post("/oauth2/revoke", data={**form(cp, key, cid), "token": token})
        after = c.post("/oauth2/introspect", data={**form(cp, key, cid), "token": token})
        trust = c.get("/v1/trust").json()
        unauth = c.post("/oauth2/introspect", data={"token": token})
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert active["active"] is True and active["jti"] == jti
    assert unknown.status_code == 200 and revoked.status_code == 200  # RFC 7009 §2.2
    assert after.status_code == 200 and after.content == b'{"active":false}'
    assert jti in trust["revoked_jtis"]
    assert unauth.status_code == 401


def test_signing_key_rotation_too_soon_is_a_conflict(cp: ControlPlaneThread) -> None:
    with cp.client(headers=cp.admin_headers) as c:
        doc = err(c.post("/v1/signing-keys/rotate"), Reason.CONFLICT)
    assert "refusing to rotate" in doc["detail"]


# -- hostile input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "ctype", "reason"),
    [
        pytest.param(b"{" * 70_000, "application/json", Reason.BODY_TOO_LARGE, id="oversized"),
        pytest.param(b'{"join_token": ', "application/json", Reason.JSON_MALFORMED, id="truncated-json"),
        pytest.param(b"\xff\xfe garbage", "application/json", Reason.JSON_MALFORMED, id="binary"),
        pytest.param(b"[" * 5000 + b"]" * 5000, "application/json", Reason.JSON_MALFORMED, id="deep-nesting"),
        pytest.param(b'{"csr": "x"}', "text/plain", Reason.UNSUPPORTED_MEDIA_TYPE, id="wrong-content-type"),
        pytest.param(b'{"csr": "x"}', "", Reason.UNSUPPORTED_MEDIA_TYPE, id="no-content-type"),
        pytest.param(b'"just a string"', "application/json", Reason.VALIDATION_FAILED, id="not-an-object"),
    ],
)
def test_hostile_bodies_get_clean_json_errors(
    cp: ControlPlaneThread, content: bytes, ctype: str, reason: Reason
) -> None:
    headers = {**cp.admin_headers, **({"Content-Type": ctype} if ctype else {})}
    with cp.client() as c:
        err(c.post("/v1/svids/join", content=content, headers=headers), reason)
        err(c.post("/v1/join-tokens", content=content, headers=headers), reason)


def test_oauth_endpoints_answer_bad_transport_input_in_rfc6749_form(cp: ControlPlaneThread) -> None:
    with cp.client() as c:
        big = c.post("/oauth2/token", content=b"a=" + b"b" * 70_000,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        js = c.post("/oauth2/token", json={"grant_type": "client_credentials"})
        bad = c.post(
            "/oauth2/token",
            content=b"\xff=\xfe",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        many = c.post("/oauth2/token", content="&".join(f"a{i}=1" for i in range(100)).encode(),
                      headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert big.status_code == 413 and big.json()["error"] == "invalid_request"
    for r in (js, bad, many):
        assert r.status_code == 400 and r.json()["error"] == "invalid_request", r.text


def test_bad_query_values_are_validation_errors(cp: ControlPlaneThread) -> None:
    with cp.client(headers=cp.admin_headers) as c:
        err(c.get("/v1/svids", params={"valid": "maybe"}), Reason.VALIDATION_FAILED)
        err(c.delete("/v1/clients"), Reason.VALIDATION_FAILED)


def test_audit_records_hold_no_secrets(cp: ControlPlaneThread, jwt_client: tuple[str, Any]) -> None:
    token = cp.join_token(sid(cp, "audit"))
    text = cp.audit_path.read_text()
    assert "join_token.create" in text and "client.register" in text
    assert token not in text and cp.admin_token not in text
    assert "gjt_" not in text and "BEGIN" not in text and "eyJ" not in text


def test_a_failed_store_is_503_without_detail(tmp_path: Path) -> None:
    with ControlPlaneThread(tmp_path) as cp:
        cp.plane.store.engine.dispose()
        (tmp_path / "garrison.db").unlink()  # the next connection finds an empty database
        with cp.client(headers=cp.admin_headers) as c:
            doc = err(c.get("/v1/trust"), Reason.STORE_UNAVAILABLE)
            err(
                c.post("/v1/join-tokens", json={"spiffe_id": cp.spiffe_id("svc/orders")}),
                Reason.STORE_UNAVAILABLE,
            )
            assert c.get("/healthz").status_code == 200
    assert "detail" not in doc


def test_unexpected_errors_are_500_stage_error_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    from garrison.control.errors import translate
    from garrison.errors import CaError, StoreError

    with caplog.at_level("ERROR", logger="garrison.control.api"):
        resp = translate(RuntimeError("secret-ish internals /etc/garrison/kek.key")).response()
    assert resp.status_code == 500
    assert json.loads(bytes(resp.body)) == {"error": "stage_error", "message": Reason.STAGE_ERROR.message}
    assert "RuntimeError" in caplog.text  # the traceback is for the operator
    assert translate(StoreError("postgresql://u:pw@db")).response().body == (
        b'{"error":"store_unavailable","message":"service unavailable"}'
    )
    assert translate(CaError("no current intermediate")).status == 503


def test_a_trickled_body_times_out_with_408(cp: ControlPlaneThread, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from garrison.control import parse

    monkeypatch.setattr(parse, "BODY_TIMEOUT", 0.5)
    ctx = cp.ssl_context()
    with (
        socket.create_connection(("127.0.0.1", cp.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        s.sendall(b"POST /v1/svids/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"csr\"")  # fmt: skip
        start = time.monotonic()
        reply = b""
        while b"}" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert b'"error":"request_timeout"' in reply
    assert time.monotonic() - start < 4


def test_admin_calls_fail_closed_when_the_audit_log_is_down(tmp_path: Path) -> None:
    with ControlPlaneThread(tmp_path) as cp, cp.client() as c:  # its own plane: the audit log is closed
        assert c.request("LIST", "/v1/clients", headers=cp.admin_headers).status_code == 200
        cp.plane.audit.close()  # type: ignore[attr-defined]  # the AuditLog can take no more records
        doc = err(c.post("/v1/join-tokens", json={"spiffe_id": sid(cp, "x")}, headers=cp.admin_headers),
                  Reason.STORE_UNAVAILABLE)  # fmt: skip
        err(c.post("/v1/svids/join", json={"join_token": "gjt_x", "csr": "x"}), Reason.STORE_UNAVAILABLE)
        assert c.get("/v1/trust").status_code == 200  # unaudited reads go on
    assert "audit" in doc.get("detail", "")


def test_a_certificate_this_ca_never_issued_is_refused_even_under_our_root(
    cp: ControlPlaneThread, tmp_path: Path
) -> None:
    """Another intermediate under the same root (an external root shared with other teams) can
    chain-verify; its certificates are still refused everywhere (never issued, never revocable)."""
    import datetime

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from garrison.store.records import CaKeyPurpose
    from support.control import key_pem, write_credentials

    root_rec = next(r for r in cp.plane.store.list_ca_keys() if r.purpose is CaKeyPurpose.ROOT)
    root_cert, root_key = cp.plane.ca.unsealed(root_rec)  # stands in for the external root's owner
    now = datetime.datetime.now(datetime.UTC)
    td = datetime.timedelta
    minute, day, hour = td(minutes=1), td(days=1), td(hours=1)
    ik = ec.generate_private_key(ec.SECP256R1())
    inter = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "other team CA")]))
        .issuer_name(root_cert.subject).public_key(ik.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - minute).not_valid_after(now + day)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
        .sign(root_key, hashes.SHA256())
    )  # fmt: skip
    victim = cp.spiffe_id("svc/payments-rogue")
    lk = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(inter.subject)
        .public_key(lk.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - minute).not_valid_after(now + hour)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(victim)]), True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
        .sign(ik, hashes.SHA256())
    )  # fmt: skip
    chain = leaf.public_bytes(Encoding.PEM) + inter.public_bytes(Encoding.PEM)
    rogue = write_credentials(tmp_path / "rogue", chain, key_pem(lk))
    reg = {"client_id": victim, "auth_method": "tls_client_auth", "scopes": ["read"],
           "audiences": [cp.spiffe_id("svc/billing")]}  # fmt: skip
    with cp.client(headers=cp.admin_headers) as c:
        assert c.put("/v1/clients", json=reg).status_code == 201
    with cp.client(rogue) as c:
        token = c.post("/oauth2/token", data={"grant_type": "client_credentials", "client_id": victim})
        renew = c.post("/v1/svids/renew", json={"csr": make_csr(victim)[1]})
    assert token.status_code == 401 and token.json()["error"] == "invalid_client", token.text
    err(renew, Reason.CLIENT_CERT_UNKNOWN)


def test_a_held_store_lock_never_stalls_the_event_loop(
    cp: ControlPlaneThread, jwt_client: tuple[str, Any]
) -> None:
    """client_credentials runs on the loop (D24) but waits at most 50 ms there for SQLite's write
    lock: with the lock held for 1.5 s by another writer, /healthz still answers at once and the
    token request completes (redone in the thread pool) once the lock is released."""
    cid, key = jwt_client
    db = sqlite3.connect(cp.workdir / "garrison.db", isolation_level=None, timeout=10)
    results: dict[str, Any] = {}

    def token() -> None:
        with cp.client() as c:
            results["token"] = c.post("/oauth2/token", data=form(cp, key, cid))

    with cp.client() as c:
        assert c.post("/oauth2/token", data=form(cp, key, cid)).status_code == 200  # loop waits bounded
        db.execute("BEGIN IMMEDIATE")
        try:
            t = threading.Thread(target=token)
            t.start()
            time.sleep(0.3)  # the token request is waiting for the lock by now
            started = time.monotonic()
            assert c.get("/healthz").status_code == 200
            healthz_s = time.monotonic() - started
            time.sleep(1.2)
        finally:
            db.execute("ROLLBACK")
            db.close()
        t.join(timeout=15)
    assert healthz_s < 0.5, f"/healthz took {healthz_s:.2f}s while the store was locked"
    assert results["token"].status_code == 200, results["token"].text
