"""Token signing-key rotation while clients keep getting tokens and calling the gateway: zero failures.

The control plane publishes next + current + previous keys (RFC 7517 JWKS), so a gateway already
holds the key that becomes current, and tokens signed just before a rotation keep verifying after
it. Rotations here are forced with a future ``now`` (the ring refuses rotations closer than token
TTL + leeway; the test compresses that time). Real sockets: control plane over TLS, gateway, echo
upstream; clients authenticate with private_key_jwt.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from garrison.identity.oauth.assertion import assertion_form, build_client_assertion
from support.control import ControlPlaneThread
from support.gateway import GatewayThread

pytestmark = pytest.mark.timeout(120)

WORKERS = 4
ROTATIONS = 3
SPACING = 2.5  # seconds between rotations; each reused token spans at most one rotation


def gateway_config(cp: ControlPlaneThread, upstream_port: int) -> str:
    orders = cp.spiffe_id("svc/orders")
    billing = cp.spiffe_id("svc/billing")
    return f"""
trust_domain: {cp.trust_domain}
listeners: [{{name: edge, address: "127.0.0.1:0"}}]
issuers:
  - name: garrison
    issuer: {cp.base_url}
    jwks_url: {cp.base_url}/oauth2/jwks
    jwks_ca_file: {cp.ca_file}
    audiences: ["{orders}"]
    typ: at+jwt
    workload_identities: true
    jwks_refresh_seconds: 5
    jwks_min_refetch_seconds: 1
services:
  orders: {{upstream: "http://127.0.0.1:{upstream_port}", spiffe_id: "{orders}"}}
  billing: {{spiffe_id: "{billing}"}}
routes:
  - {{name: orders, path: /orders/**, service: orders}}
policies:
  - {{name: billing-reads-orders, routes: [orders], from: {{services: [billing]}}}}
telemetry: {{admin: null}}
"""


def test_signing_key_rotation_under_load_has_zero_failures(tmp_path: Path) -> None:
    (tmp_path / "cp").mkdir()
    (tmp_path / "gw").mkdir()
    with ControlPlaneThread(tmp_path / "cp") as cp:
        client_id = cp.spiffe_id("svc/billing")
        key = ec.generate_private_key(ec.SECP256R1())
        reg = {
            "client_id": client_id,
            "auth_method": "private_key_jwt",
            "jwks": [json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))],
            "audiences": [cp.spiffe_id("svc/orders")],
            "scopes": ["read"],
        }
        with cp.client() as c:
            assert c.put("/v1/clients", json=reg, headers=cp.admin_headers).status_code == 201
        gw = GatewayThread(tmp_path / "gw", lambda port: gateway_config(cp, port)).start()
        try:
            stop = threading.Event()
            results: list[tuple[int, str]] = []
            kids: set[str] = set()
            lock = threading.Lock()

            def worker() -> None:
                token, minted = "", 0.0
                with cp.client() as cpc, httpx.Client(base_url=gw.url, timeout=10) as gwc:
                    while not stop.is_set():
                        if time.monotonic() - minted > 1.0:
                            form = assertion_form(
                                client_id,
                                build_client_assertion(client_id, key, cp.base_url),
                                grant_type="client_credentials",
                            )
                            r = cpc.post("/oauth2/token", data=form)
                            if r.status_code != 200:
                                with lock:
                                    results.append((r.status_code, "token endpoint: " + r.text[:200]))
                                continue
                            token, minted = r.json()["access_token"], time.monotonic()
                            with lock:
                                kids.add(jwt.get_unverified_header(token)["kid"])
                        g = gwc.get("/orders/1", headers={"Authorization": f"Bearer {token}"})
                        with lock:
                            results.append((g.status_code, g.text[:200]))

            threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
            for t in threads:
                t.start()
            ring = cp.plane.ring
            start_kid = ring.current.kid
            try:
                time.sleep(SPACING)
                for i in range(1, ROTATIONS + 1):
                    with cp.client() as c:
                        published = {k["kid"] for k in c.get("/oauth2/jwks").json()["keys"]}
                    # A future `now` satisfies the ring's minimum interval (token TTL + leeway).
                    new = ring.rotate(time.time() + i * 10_000)
                    # Pre-publication: the key that just became current was already in the JWKS.
                    assert new.kid in published and len(published) >= 2, (new.kid, published)
                    time.sleep(SPACING)
            finally:
                stop.set()
                for t in threads:
                    t.join(30)
            failures = [r for r in results if r[0] != 200]
            assert len(results) > 50, f"too little load to mean anything: {len(results)} requests"
            assert failures == [], f"{len(failures)} of {len(results)} failed, first: {failures[:3]}"
            # The load really crossed the rotations: tokens from at least ROTATIONS + 1 keys were used.
            assert start_kid in kids and len(kids) >= ROTATIONS + 1, kids
        finally:
            gw.stop()
