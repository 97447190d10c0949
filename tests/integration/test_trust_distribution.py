"""The gateway consuming the control plane's trust document: certificate-bound tokens, revoked tokens,
bundle rotation, an unreachable control plane and garbage documents, start-up and reload.

All against a real control plane (``support.control``) and a real gateway on uvloop.
"""

from __future__ import annotations

import http.server
import json
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import garrison.proxy.trust as trust_mod
from garrison.config.loader import load_config
from garrison.errors import ConfigError
from garrison.proxy.gateway import Gateway
from integration.trust_kit import (
    REFRESH,
    WAIT,
    KeptAlive,
    Mesh,
    gateway_yaml,
    metric,
    running_mesh,
    wait_for,
    write_gateway_credentials,
)
from support.control import ControlPlaneThread, Svid, free_port, running_control_plane
from support.gateway import GatewayThread


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    with running_mesh(tmp_path) as m:
        yield m


def _get(mesh: Mesh, svid: Svid | None, token: str, url: str | None = None) -> httpx.Response:
    verify = mesh.tls(svid)
    with httpx.Client(verify=verify, timeout=10) as c:
        return c.get(f"{url or mesh.mtls_url}/billing/x", headers={"Authorization": f"Bearer {token}"})


# -- RFC 8705 certificate-bound tokens -------------------------------------------------------------
def test_certificate_bound_token_needs_its_own_certificate(mesh: Mesh) -> None:
    orders, billing = mesh.svid("orders"), mesh.svid("billing")
    mesh.register_mtls_client(orders)
    token = mesh.bound_token(orders)

    ok = _get(mesh, orders, token)
    assert ok.status_code == 200, ok.text
    assert ok.json()["headers"]["x-garrison-principal"] == orders.spiffe_id
    # no client certificate (CERT_OPTIONAL listener): the token alone is not enough
    no_cert = _get(mesh, None, token)
    assert (no_cert.status_code, no_cert.json()["error"]) == (401, "token_binding_mismatch")
    # another valid SVID of the same trust domain: still not the certificate the token is bound to
    other = _get(mesh, billing, token)
    assert (other.status_code, other.json()["error"]) == (401, "token_binding_mismatch")
    # plain HTTP listener: no TLS at all
    plain = httpx.get(f"{mesh.plain_url}/billing/x", headers={"Authorization": f"Bearer {token}"})
    assert (plain.status_code, plain.json()["error"]) == (401, "token_binding_mismatch")
    assert _get(mesh, orders, token).status_code == 200  # cache hit, right certificate


def test_revoked_token_is_refused_within_the_refresh_interval(mesh: Mesh) -> None:
    orders = mesh.svid("orders")
    mesh.register_mtls_client(orders)
    token, other_token = mesh.bound_token(orders), mesh.bound_token(orders)
    kept = KeptAlive(mesh.gateway.port("mtls"), mesh.tls(orders))
    try:
        assert kept.get("/billing/x", {"Authorization": f"Bearer {token}"})[0] == 200  # now in the cache
        mesh.revoke_token(orders, token)
        started = time.monotonic()

        def refused() -> bool:
            status, body, _ = kept.get("/billing/x", {"Authorization": f"Bearer {token}"})
            return status == 401 and body.get("error") == "token_revoked"

        wait_for(refused, what="token_revoked on the kept-alive connection (a cache hit)")
        assert time.monotonic() - started < WAIT
    finally:
        kept.close()
    r = _get(mesh, orders, token)
    assert (r.status_code, r.json()["error"]) == (401, "token_revoked")
    assert _get(mesh, orders, other_token).status_code == 200  # only that jti is revoked


# -- bundle rotation -----------------------------------------------------------------------------------
def test_svids_of_a_new_root_are_accepted_after_the_bundle_refresh(mesh: Mesh) -> None:
    old = mesh.svid("orders")
    seq = mesh.trust.sequence
    assert seq is not None
    ca = mesh.cp.plane.ca
    ca.prepare_next(new_root=True)  # publishes a bundle with the new root next to the old one
    ca.activate_next(time.time() + 3600)  # as if the propagation delay had passed
    new = mesh.svid("orders")
    assert new.certificate.issuer != old.certificate.issuer  # really from the new intermediate
    wait_for(lambda: (mesh.trust.sequence or 0) > seq, what="new bundle pulled")
    with mesh.client(new) as c:
        assert c.get("/public/x").status_code == 200
    with mesh.client(old) as c:
        assert c.get("/public/x").status_code == 200  # the old root is still in the bundle
    assert metric(mesh.metrics(), "garrison_trust_bundle_sequence") == mesh.trust.sequence


# -- failure of the control plane --------------------------------------------------------------------
def test_control_plane_down_keeps_the_last_good_state(mesh: Mesh, caplog: pytest.LogCaptureFixture) -> None:
    orders, revoked = mesh.svid("orders"), mesh.svid("orders")
    mesh.revoke_svid(revoked)
    wait_for(lambda: revoked.serial in mesh.trust.revoked_serials, what="revocation pulled")
    state = mesh.trust.state
    caplog.set_level(logging.WARNING, "garrison.trust")
    mesh.cp.stop()
    wait_for(lambda: mesh.trust.fetch_failures >= 2, what="failed fetches")
    assert mesh.trust.state is state  # nothing replaced it
    with mesh.client(orders) as c:
        assert c.get("/public/x").status_code == 200
    with mesh.client(revoked) as c:
        assert c.get("/public/x").status_code == 403  # still revoked from the last good document
    text = mesh.metrics()
    assert metric(text, "garrison_trust_fetch_failures_total") >= 2
    assert metric(text, "garrison_trust_age_seconds") >= REFRESH
    assert any("keeping <TrustState" in r.getMessage() for r in caplog.records)


class _TrustServer:
    """A stand-in for ``/v1/trust`` that serves whatever body the test sets (over real TLS)."""

    def __init__(self, cp: ControlPlaneThread, workdir: Path) -> None:
        creds = cp.plane.server_credentials()
        (workdir / "fake.pem").write_bytes(creds.chain_pem + creds.key_pem)
        self.body = json.dumps(cp.plane.trust_document()).encode()
        self.status = 200
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(owner.status)
                self.send_header("content-length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                return None  # the gateway hanging up on an oversized body is expected here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(workdir / "fake.pem")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _older(doc: dict[str, Any]) -> bytes:
    seq = doc["bundle_sequence"] - 1
    return json.dumps(
        {**doc, "bundle_sequence": seq, "bundle": {**doc["bundle"], "spiffe_sequence": seq}}
    ).encode()


def test_garbage_trust_documents_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "cp").mkdir(mode=0o700)
    gwdir = tmp_path / "gw"
    gwdir.mkdir()
    with running_control_plane(tmp_path / "cp") as cp:
        write_gateway_credentials(cp, gwdir)
        fake = _TrustServer(cp, gwdir)
        gw = GatewayThread(gwdir, lambda port: gateway_yaml(cp, port, gwdir, control_plane_url=fake.url))
        try:
            gw.start()
            mesh = Mesh(cp, gw, gwdir)
            good = mesh.trust.state
            assert good is not None
            orders = mesh.svid("orders")
            doc = cp.plane.trust_document()
            bad_bodies = [  # (every defect is covered sans-IO in test_trust_document.py)
                b"not json",
                json.dumps({**doc, "bundle": {"keys": []}}).encode(),  # would distrust everyone
                _older(doc),  # a rollback to an older document (fewer revocations, old anchors)
                b"x" * (trust_mod.MAX_TRUST_BYTES + 10),
            ]
            for body in bad_bodies:  # fetched over HTTPS right away (the refresh loop runs as well)
                refused = mesh.trust.rejected_documents
                fake.body = body
                assert gw.call(mesh.trust.fetch_once()) is False, body[:40]
                assert mesh.trust.rejected_documents > refused
                assert mesh.trust.state is good
            fake.body, fake.status = b"{}", 500
            assert gw.call(mesh.trust.fetch_once()) is False
            assert mesh.trust.state is good
            with mesh.client(orders) as c:
                assert c.get("/public/x").status_code == 200  # still serving on the last good bundle
            # and a good document is taken again
            mesh.revoke_svid(orders)
            fake.body, fake.status = json.dumps(cp.plane.trust_document()).encode(), 200
            wait_for(lambda: orders.serial in mesh.trust.revoked_serials, what="good document taken")
        finally:
            gw.stop()
            fake.close()


# -- start-up and reload -------------------------------------------------------------------------------
def test_gateway_does_not_start_without_the_trust_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trust_mod, "START_TIMEOUT_SECONDS", 0.5)
    (tmp_path / "cp").mkdir(mode=0o700)
    gwdir = tmp_path / "gw"
    gwdir.mkdir()
    with running_control_plane(tmp_path / "cp") as cp:
        write_gateway_credentials(cp, gwdir)
        dead = f"https://127.0.0.1:{free_port()}"
        path = gwdir / "garrison.yaml"
        path.write_text(gateway_yaml(cp, 9, gwdir, control_plane_url=dead))
        gw = GatewayThread(gwdir, "")
        gw.thread.start()
        try:
            started = time.monotonic()
            with pytest.raises(ConfigError, match="cannot get the trust document"):
                gw.call(Gateway(load_config(path), config_path=path).start())
            assert time.monotonic() - started < 5  # bounded, not a hang
        finally:
            gw.loop.call_soon_threadsafe(gw.loop.stop)
            gw.thread.join(5)


def test_reload_keeps_or_replaces_the_puller(mesh: Mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trust_mod, "START_TIMEOUT_SECONDS", 0.5)
    port = mesh.gw.upstream_port
    puller = mesh.trust
    assert mesh.gw.reload(gateway_yaml(mesh.cp, port, mesh.workdir) + "\n# touched\n")
    assert mesh.trust is puller  # same control plane settings: the same puller lives on
    assert mesh.gw.reload(gateway_yaml(mesh.cp, port, mesh.workdir, refresh=2.0))
    assert mesh.trust is not puller and mesh.trust.state is not None  # a new one, already fetched
    dead = f"https://127.0.0.1:{free_port()}"
    current = mesh.trust
    assert not mesh.gw.reload(gateway_yaml(mesh.cp, port, mesh.workdir, control_plane_url=dead))
    assert mesh.trust is current  # a control plane that cannot be reached: the reload is refused
    orders = mesh.svid("orders")
    mesh.revoke_svid(orders)
    wait_for(
        lambda: orders.serial in mesh.trust.revoked_serials, timeout=3 * WAIT, what="new puller refreshes"
    )
    with mesh.client(orders) as c:
        assert c.get("/public/x").status_code == 403  # the listener reads the new puller's state
