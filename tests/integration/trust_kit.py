"""A real control plane plus a real gateway that pulls its trust document: what the trust tests share.

The gateway has one mTLS listener (``mtls``: its server certificate is an SVID from the control plane,
client certificates verified against the pulled bundle) and one plain listener (``plain``). Its only
issuer is the control plane's token service (JWKS over TLS verified with ``jwks_ca_file``, with
``revocations: true``). ``orders`` may call ``/billing/**``; ``/public/**`` needs no token.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from garrison.identity.ca.certs import make_intermediate, make_root, new_key
from garrison.identity.ca.svid import build_svid, check_csr
from garrison.proxy.gateway import Gateway
from garrison.proxy.trust import TrustPuller
from support.control import (
    ControlPlaneThread,
    Svid,
    key_pem,
    make_csr,
    running_control_plane,
    write_credentials,
)
from support.gateway import LIMITS, GatewayThread

REFRESH = 1.0  # control_plane.bundle_refresh_seconds of the gateway (the minimum the config allows)
WAIT = 6 * REFRESH  # a refresh must have happened by then (jitter, a slow CI box)


def gateway_yaml(
    cp: ControlPlaneThread,
    upstream_port: int,
    workdir: Path,
    *,
    require_client_cert: bool = False,
    refresh: float = REFRESH,
    control_plane_url: str | None = None,
) -> str:
    td = cp.trust_domain
    tls = (
        f'{{cert_file: "{workdir / "gw.pem"}", key_file: "{workdir / "gw.key"}",'
        f" client_trust_bundle: true, require_client_cert: {str(require_client_cert).lower()}}}"
    )
    return f"""
trust_domain: {td}
listeners:
  - {{name: mtls, address: "127.0.0.1:0", tls: {tls}, limits: {LIMITS}}}
  - {{name: plain, address: "127.0.0.1:0", limits: {LIMITS}}}
issuers:
  - name: cp
    issuer: "{cp.base_url}"
    jwks_url: "{cp.base_url}/oauth2/jwks"
    jwks_ca_file: cp-ca.pem
    typ: at+jwt
    audiences: ["spiffe://{td}/svc/billing"]
    workload_identities: true
    revocations: true
services:
  billing: {{upstream: "http://127.0.0.1:{upstream_port}"}}
  orders: {{}}
routes:
  - {{name: billing, path: /billing/**, service: billing}}
  - {{name: public, path: /public/**, service: billing, public: true}}
policies:
  - {{name: orders-calls-billing, routes: [billing], from: {{services: [orders]}}}}
control_plane:
  url: "{control_plane_url or cp.base_url}"
  ca_file: cp-ca.pem
  bundle_refresh_seconds: {refresh}
telemetry:
  admin: {{address: "127.0.0.1:0"}}
"""


@dataclass
class Mesh:
    cp: ControlPlaneThread
    gw: GatewayThread
    workdir: Path

    @property
    def gateway(self) -> Gateway:
        assert self.gw.gateway is not None
        return self.gw.gateway

    @property
    def trust(self) -> TrustPuller:
        assert self.gateway.trust is not None
        return self.gateway.trust

    @property
    def mtls_url(self) -> str:
        return f"https://127.0.0.1:{self.gateway.port('mtls')}"

    @property
    def plain_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port('plain')}"

    def tls(self, svid: Svid | tuple[Path, Path] | None = None) -> ssl.SSLContext:
        """A client context that verifies the gateway's SVID and presents ``svid`` (if any)."""
        return self.cp.ssl_context(svid)

    def client(self, svid: Svid | tuple[Path, Path] | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.mtls_url, verify=self.tls(svid), timeout=10)

    def svid(self, name: str) -> Svid:
        return self.cp.issue_svid(self.cp.spiffe_id(f"svc/{name}"))

    def revoke_svid(self, svid: Svid) -> None:
        with self.cp.client() as c:
            r = c.post("/v1/revocations", json={"serial": svid.serial}, headers=self.cp.admin_headers)
        assert r.status_code == 200, r.text

    def register_mtls_client(self, svid: Svid) -> None:
        reg = {
            "client_id": svid.spiffe_id,
            "auth_method": "tls_client_auth",
            "audiences": [self.cp.spiffe_id("svc/billing")],
            "scopes": ["read"],
        }
        with self.cp.client() as c:
            r = c.put("/v1/clients", json=reg, headers=self.cp.admin_headers)
        assert r.status_code in (200, 201), r.text

    def bound_token(self, svid: Svid) -> str:
        """RFC 8705: a client-credentials token for ``svid``'s client, bound to its certificate."""
        with self.cp.client(svid) as c:
            r = c.post(
                "/oauth2/token", data={"grant_type": "client_credentials", "client_id": svid.spiffe_id}
            )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def revoke_token(self, svid: Svid, token: str) -> None:
        with self.cp.client(svid) as c:
            r = c.post("/oauth2/revoke", data={"token": token, "client_id": svid.spiffe_id})
        assert r.status_code == 200, r.text

    def metrics(self) -> str:
        return httpx.get(f"{self.gw.admin_url}/metrics", timeout=5).text


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} not exported")


def wait_for(pred: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def rogue_svid(directory: Path, spiffe_id: str, trust_domain: str) -> tuple[Path, Path]:
    """A well-formed SVID for ``spiffe_id`` from a CA of the same trust domain that is not in the bundle."""
    now = time.time()
    root_key, int_key = new_key(), new_key()
    root = make_root(root_key, trust_domain, now, 86_400)
    inter = make_intermediate(int_key.public_key(), trust_domain, root, root_key, now, 3600)
    key, csr = make_csr(spiffe_id)
    svid = build_svid(check_csr(csr, trust_domain), inter, int_key, now)
    return write_credentials(directory, svid.chain_pem, key_pem(key))


def write_gateway_credentials(cp: ControlPlaneThread, workdir: Path) -> None:
    creds = cp.plane.issue_credentials(cp.spiffe_id("svc/gateway"), server_names=("127.0.0.1", "localhost"))
    (workdir / "gw.pem").write_bytes(creds.chain_pem)
    (workdir / "gw.key").write_bytes(creds.key_pem)
    os.chmod(workdir / "gw.key", 0o600)
    (workdir / "cp-ca.pem").write_bytes(cp.ca_file.read_bytes())


@contextmanager
def running_mesh(tmp_path: Path, **gateway_kw: Any) -> Iterator[Mesh]:
    cpdir, gwdir = tmp_path / "cp", tmp_path / "gw"
    cpdir.mkdir(mode=0o700)
    gwdir.mkdir()
    with running_control_plane(cpdir) as cp:
        write_gateway_credentials(cp, gwdir)
        gw = GatewayThread(gwdir, lambda port: gateway_yaml(cp, port, gwdir, **gateway_kw)).start()
        try:
            yield Mesh(cp, gw, gwdir)
        finally:
            gw.stop()


class KeptAlive:
    """One HTTP/1.1 connection over TLS, reused request after request (``http.client``)."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        self.conn.connect()
        self.sock = self.conn.sock

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], bool]:
        """Status, JSON body (or {}), and whether the server said it closes the connection."""
        self.conn.request("GET", path, headers=headers or {})
        r = self.conn.getresponse()
        body = r.read()
        closing = (r.getheader("connection") or "").lower() == "close"
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            doc = {}
        return r.status, doc, closing

    def close(self) -> None:
        self.conn.close()
