"""Run a real control plane (fresh SQLite store, KEK, admin token) on a free loopback port.

``ControlPlaneThread`` serves the API over mTLS from a background thread with its own event loop;
tests talk to it with httpx/curl/openssl. ``control_plane`` is the pytest fixture. Helpers make
CSRs, get SVIDs through the join-token API and write credentials to files.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import ssl
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from garrison.config.loader import load_config
from garrison.config.models import GarrisonConfig
from garrison.control.plane import ADMIN_PATH, ControlPlane, write_secret_file
from garrison.control.server import ControlPlaneServer, open_audit
from garrison.identity.ca import generate_kek_file

TD = "test.local"
SERVICES = ("orders", "billing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_yaml(port: int, *, trust_domain: str = TD, extra_control_plane: str = "") -> str:
    services = "\n".join(f"  {name}: {{}}" for name in SERVICES)
    return f"""
trust_domain: {trust_domain}
services:
{services}
store:
  url: garrison.db
  kek: {{file: kek.key}}
control_plane:
  address: "127.0.0.1:{port}"
  server_names: [localhost, 127.0.0.1]
  admin_token_file: admin.token
  audit_log: audit.log
{extra_control_plane}
"""


def init_workdir(
    workdir: Path, port: int, *, trust_domain: str = TD, extra_control_plane: str = ""
) -> tuple[Path, str]:
    """garrison.yaml, KEK and admin token in ``workdir`` (what ``garrison init`` leaves, minus the CA).

    Returns the config path and the admin token. ``ControlPlane.open(..., initialize=True)`` creates
    the CA in the store on first use.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "garrison.yaml"
    config_path.write_text(
        config_yaml(port, trust_domain=trust_domain, extra_control_plane=extra_control_plane)
    )
    generate_kek_file(workdir / "kek.key")
    admin_token = "gat_" + secrets.token_urlsafe(32)
    write_secret_file(workdir / "admin.token", admin_token)
    return config_path, admin_token


def make_csr(spiffe_id: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key and a PEM CSR whose one URI SAN is ``spiffe_id``."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_credentials(directory: Path, chain_pem: str | bytes, key: str | bytes) -> tuple[Path, Path]:
    """``svid.pem`` (chain) and ``svid.key`` (0600) in ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "svid.pem", directory / "svid.key"
    cert_path.write_bytes(chain_pem.encode() if isinstance(chain_pem, str) else chain_pem)
    write_secret_file(key_path, key)
    return cert_path, key_path


@dataclass
class Svid:
    """An SVID obtained over the API, with its key and the files a client presents."""

    spiffe_id: str
    serial: str
    not_after: float
    chain_pem: str
    bundle_pem: str
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    cert_file: Path
    key_file: Path

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.chain_pem.encode())


class ControlPlaneThread:
    """A control plane in ``workdir`` served from a daemon thread's own event loop."""

    def __init__(
        self, workdir: Path, *, trust_domain: str = TD, extra_control_plane: str = "", audit: bool = True
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.config_path, self.admin_token = init_workdir(
            workdir, self.port, trust_domain=trust_domain, extra_control_plane=extra_control_plane
        )
        self.config: GarrisonConfig = load_config(self.config_path)
        assert self.config.control_plane is not None
        self.audit_path = workdir / "audit.log"
        self.audit, self._close_audit = open_audit(workdir, "audit.log" if audit else None)
        self.plane = ControlPlane.open(self.config, workdir, audit=self.audit, initialize=True)
        self.ca_file = workdir / "ca" / "bundle.pem"
        self.ca_file.parent.mkdir(exist_ok=True)
        self.ca_file.write_bytes(self.plane.trust_anchors_pem())
        self.server = ControlPlaneServer(self.plane, "127.0.0.1", self.port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="control-plane", daemon=True)
        self._stopped = False

    @property
    def base_url(self) -> str:
        return self.plane.settings.base_url

    @property
    def trust_domain(self) -> str:
        return self.plane.trust_domain

    def spiffe_id(self, path: str) -> str:
        return f"spiffe://{self.trust_domain}/{path.lstrip('/')}"

    @property
    def admin_id(self) -> str:
        return f"spiffe://{self.trust_domain}{ADMIN_PATH}"

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> ControlPlaneThread:
        self.thread.start()
        self.call(self.server.start())
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self.call(self.server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
            self.plane.close()
            self._close_audit()

    # -- clients ---------------------------------------------------------------------------------------
    def ssl_context(self, cert: tuple[Path, Path] | Svid | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if isinstance(cert, Svid):
            ctx.load_cert_chain(cert.cert_file, cert.key_file)
        elif cert is not None:
            ctx.load_cert_chain(*cert)
        return ctx

    def client(self, cert: tuple[Path, Path] | Svid | None = None, **kw: Any) -> httpx.Client:
        """An httpx client that verifies the control plane (and presents ``cert``, if given)."""
        return httpx.Client(base_url=self.base_url, verify=self.ssl_context(cert), timeout=10, **kw)

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def join_token(self, spiffe_id: str, ttl: float | None = None) -> str:
        """A join token created over the admin API (admin bearer token)."""
        body: dict[str, Any] = {"spiffe_id": spiffe_id}
        if ttl is not None:
            body["ttl_seconds"] = ttl
        with self.client() as c:
            r = c.post("/v1/join-tokens", json=body, headers=self.admin_headers)
        r.raise_for_status()
        return str(r.json()["join_token"])

    def issue_svid(self, spiffe_id: str, directory: Path | None = None) -> Svid:
        """Join token (admin API) -> CSR -> ``POST /v1/svids/join``; credentials written to files."""
        return issue_svid(self, spiffe_id, directory)

    def __enter__(self) -> ControlPlaneThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ControlPlaneThread {self.base_url}>"


def issue_svid(cp: ControlPlaneThread, spiffe_id: str, directory: Path | None = None) -> Svid:
    key, csr = make_csr(spiffe_id)
    token = cp.join_token(spiffe_id)
    with cp.client() as c:
        r = c.post("/v1/svids/join", json={"join_token": token, "csr": csr})
    if r.status_code != 201:
        raise AssertionError(f"join failed: {r.status_code} {r.text}")
    doc = r.json()
    where = directory or cp.workdir / "svids" / f"{spiffe_id.rsplit('/', 1)[-1]}-{doc['serial'][:12]}"
    cert_file, key_file = write_credentials(where, doc["chain_pem"], key_pem(key))
    return Svid(
        spiffe_id,
        doc["serial"],
        doc["not_after"],
        doc["chain_pem"],
        doc["bundle_pem"],
        key,
        cert_file,
        key_file,
    )


@contextmanager
def running_control_plane(workdir: Path, **kw: Any) -> Iterator[ControlPlaneThread]:
    cp = ControlPlaneThread(workdir, **kw).start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[ControlPlaneThread]:
    """A running control plane in ``tmp_path / "cp"`` (stopped after the test)."""
    d = tmp_path / "cp"
    d.mkdir()
    os.chmod(d, 0o700)
    with running_control_plane(d) as cp:
        yield cp


__all__ = [
    "SERVICES",
    "TD",
    "ControlPlaneThread",
    "Svid",
    "config_yaml",
    "control_plane",
    "free_port",
    "init_workdir",
    "issue_svid",
    "key_pem",
    "make_csr",
    "running_control_plane",
    "write_credentials",
]
