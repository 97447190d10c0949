"""Attacks on an mTLS listener whose client certificates are checked against the control plane's bundle.

A revoked SVID (new connection and already-open keep-alive connection), a certificate from another CA,
no certificate where one is required: each refused, with real clients (httpx, http.client, curl).
"""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from integration.trust_kit import WAIT, KeptAlive, Mesh, rogue_svid, running_mesh, wait_for


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    with running_mesh(tmp_path, require_client_cert=True) as m:
        yield m


def _public(mesh: Mesh, ctx: ssl.SSLContext) -> int:
    with httpx.Client(verify=ctx, timeout=10) as c:
        return c.get(f"{mesh.mtls_url}/public/x").status_code


def _closed_by_server(kept: KeptAlive) -> bool:
    sock = kept.sock
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_revoked_svid_is_refused_on_new_and_kept_alive_connections(mesh: Mesh) -> None:
    orders = mesh.svid("orders")
    other = mesh.svid("orders")  # same workload, another SVID: revoking one serial leaves it alone
    port = mesh.gateway.port("mtls")
    idle = KeptAlive(port, mesh.tls(orders))
    busy = http.client.HTTPSConnection("127.0.0.1", port, context=mesh.tls(orders), timeout=10)
    try:
        assert idle.get("/public/a")[0] == 200
        assert _public(mesh, mesh.tls(orders)) == 200
        # a request in progress (half its body sent) when the revocation arrives
        busy.putrequest("POST", "/public/upload")
        busy.putheader("content-length", "10")
        busy.endheaders(b"12345")

        mesh.revoke_svid(orders)
        wait_for(lambda: orders.serial in mesh.trust.revoked_serials, what="revocation pulled")

        # the idle kept-alive connection is cut by the gateway without waiting for a request
        wait_for(lambda: _closed_by_server(idle), timeout=2, what="idle connection closed")
        # the busy one finishes the request it had begun, and its next request is refused and closed
        busy.send(b"67890")
        first = busy.getresponse()
        assert first.status == 200 and first.read()
        busy.request("GET", "/public/next")
        second = busy.getresponse()
        assert second.status == 403 and json.loads(second.read())["error"] == "svid_revoked"
        assert (second.getheader("connection") or "").lower() == "close"
        # a new connection with the revoked SVID: refused too
        with httpx.Client(verify=mesh.tls(orders), timeout=10) as c:
            r = c.get(f"{mesh.mtls_url}/public/c")
        assert r.status_code == 403 and r.json()["error"] == "svid_revoked"
        assert _public(mesh, mesh.tls(other)) == 200  # only that serial is cut off
    finally:
        idle.close()
        busy.close()
    text = mesh.metrics()
    assert 'garrison_decisions_total{mode="enforce",reason="svid_revoked",stage="tls"}' in text
    assert 'garrison_trust_revoked{kind="svid"} 1.0' in text


def test_revocation_reaches_the_gateway_within_the_refresh_interval(mesh: Mesh) -> None:
    orders = mesh.svid("orders")
    assert _public(mesh, mesh.tls(orders)) == 200
    mesh.revoke_svid(orders)
    # poll with real requests: refused within the refresh interval (plus jitter slack)
    wait_for(lambda: _public(mesh, mesh.tls(orders)) == 403, timeout=WAIT, what="403 for the revoked SVID")


def test_certificate_from_another_ca_is_refused_at_the_handshake(mesh: Mesh, tmp_path: Path) -> None:
    # the same SPIFFE ID as a real workload, from a CA of the same trust domain that the bundle lacks
    rogue = rogue_svid(tmp_path / "rogue", mesh.cp.spiffe_id("svc/orders"), mesh.cp.trust_domain)
    ctx = mesh.tls(rogue)
    with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError)):
        _public(mesh, ctx)
    # no certificate at all on a require_client_cert listener: refused as well
    with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError)):
        _public(mesh, mesh.tls())
    assert _public(mesh, mesh.tls(mesh.svid("orders"))) == 200  # the listener itself works


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_with_svid_and_with_rogue_certificate(mesh: Mesh, tmp_path: Path) -> None:
    orders = mesh.svid("orders")
    url = f"{mesh.mtls_url}/public/x"

    def curl(cert: Path, key: Path) -> str:
        out = subprocess.run(
            [
                *("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(mesh.cp.ca_file)),
                *("--cert", str(cert), "--key", str(key), url),
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout

    assert curl(orders.cert_file, orders.key_file) == "200"
    rogue = rogue_svid(tmp_path / "rogue", orders.spiffe_id, mesh.cp.trust_domain)
    assert curl(*rogue) == "000"  # handshake refused: no HTTP status at all
    mesh.revoke_svid(orders)
    wait_for(lambda: curl(orders.cert_file, orders.key_file) == "403", what="curl sees 403")
