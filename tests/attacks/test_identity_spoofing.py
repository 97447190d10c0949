"""Client-sent identity and forwarding headers never reach the upstream as trusted values."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from support.gateway import TD, GatewayThread, Signer

SPOOFED = {
    "X-Garrison-Principal": f"spiffe://{TD}/svc/admin",
    "X-Garrison-Subject": "root",
    "X-Garrison-Scopes": "admin",
    "X-Forwarded-For": "10.0.0.1",
    "X-Real-IP": "10.0.0.1",
    "Forwarded": "for=10.0.0.1;proto=https",
    "X-User": "root",
    "X-Remote-User": "root",
    "X-Auth-Request-Email": "root@example.com",
    "X-Original-URL": "/admin",
}


def test_spoofed_identity_headers_without_token_get_401(gateway: GatewayThread) -> None:
    r = httpx.get(gateway.url + "/microservice1/getData", headers=SPOOFED)
    assert r.status_code == 401
    assert r.json()["error"] == "authn_required"


def test_upstream_sees_only_gateway_set_identity(gateway: GatewayThread, signer: Signer) -> None:
    token = signer.svc("microservice2")
    r = httpx.get(
        gateway.url + "/microservice1/getData", headers={**SPOOFED, "Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200
    seen = r.json()["headers"]
    assert seen["x-garrison-principal"] == f"spiffe://{TD}/svc/microservice2"
    assert seen["x-garrison-subject"] == f"spiffe://{TD}/svc/microservice2"
    assert "x-garrison-scopes" not in seen
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the real peer, not the client's claim
    for name in ("x-real-ip", "x-user", "x-remote-user", "x-auth-request-email", "x-original-url"):
        assert name not in seen, name


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("x-garrison-principal", id="gateway-identity-header"),
        pytest.param("X-GARRISON-PRINCIPAL", id="upper-case"),
    ],
)
def test_identity_header_on_public_route_is_stripped(gateway: GatewayThread, header: str) -> None:
    r = httpx.get(gateway.url + "/public/x", headers={header: f"spiffe://{TD}/svc/admin"})
    assert r.status_code == 200
    assert "x-garrison-principal" not in r.json()["headers"]


def test_user_issuer_cannot_assert_a_workload(tmp_path: Path, signer: Signer) -> None:
    """An issuer not trusted for workloads (an external user IdP) mints sub=<a SPIFFE ID>: a user."""
    from support.gateway import base_config

    gw = GatewayThread(
        tmp_path, lambda p: base_config(signer, p).replace("    workload_identities: true\n", "")
    ).start()
    try:
        r = httpx.get(
            gw.url + "/microservice1/getData",
            headers={"Authorization": f"Bearer {signer.svc('microservice2')}"},
        )
        assert r.status_code == 403
    finally:
        gw.stop()


def test_client_id_never_names_the_principal(gateway: GatewayThread, signer: Signer) -> None:
    token = signer.token("alice", client_id=f"spiffe://{TD}/svc/microservice2")
    r = httpx.get(gateway.url + "/microservice1/getData", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
