"""The control plane's TLS: server SVID, optional client certificates, rotation, process lifecycle."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509

from garrison.config.loader import load_config
from garrison.control.plane import ControlPlane
from garrison.identity.ca.certs import serial_hex
from support.control import (
    ControlPlaneThread,
    control_plane,  # noqa: F401 - the fixture, used by name
    free_port,
    init_workdir,
    make_csr,
)

DAY = 86_400.0


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneThread]:
    with ControlPlaneThread(tmp_path_factory.mktemp("cp")) as running:
        yield running


def served_certificate(cp: ControlPlaneThread, ctx: ssl.SSLContext | None = None) -> x509.Certificate:
    ctx = ctx or cp.ssl_context()
    with (
        socket.create_connection(("127.0.0.1", cp.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_server_certificate_is_the_control_plane_svid(cp: ControlPlaneThread) -> None:
    cert = served_certificate(cp)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [cp.plane.control_plane_id]
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{cp.port}", "-CAfile", str(cp.ca_file),
         "-verify_return_error", "-verify_ip", "127.0.0.1", "-brief"],
        input="", capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Verification: OK" in out.stderr


def test_tls_below_1_2_is_refused(cp: ControlPlaneThread) -> None:
    assert cp.server.tls is not None
    assert cp.server.tls.listener.minimum_version == ssl.TLSVersion.TLSv1_2
    ctx = cp.ssl_context()
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        served_certificate(cp, ctx)


def test_should_fail_because_the_client_certificate_is_from_a_foreign_ca(
    cp: ControlPlaneThread, tmp_path: Path
) -> None:
    foreign = trustme.CA()
    leaf = foreign.issue_cert("intruder.test")
    cert_file, key_file = tmp_path / "c.pem", tmp_path / "c.key"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    leaf.private_key_pem.write_to_path(str(key_file))
    with pytest.raises(httpx.TransportError), cp.client((cert_file, key_file)) as c:
        c.request("LIST", "/v1/svids")
    with cp.client() as c:  # client certificates stay optional for everyone else
        assert c.get("/healthz").status_code == 200


def test_a_curl_client_with_an_svid_renews_over_mtls(cp: ControlPlaneThread, tmp_path: Path) -> None:
    svid = cp.issue_svid(cp.spiffe_id("svc/curl"))
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"csr": make_csr(svid.spiffe_id)[1]}))
    out = subprocess.run(
        ["curl", "-sS", "--cacert", str(cp.ca_file),
         "--cert", str(svid.cert_file), "--key", str(svid.key_file),
         "-H", "Content-Type: application/json", "--data-binary", f"@{body}", "-w", "\n%{http_code}",
         f"{cp.base_url}/v1/svids/renew"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    text, _, status = out.stdout.rpartition("\n")
    assert status == "201", out.stdout + out.stderr
    assert json.loads(text)["spiffe_id"] == svid.spiffe_id


def test_serving_certificate_rotates_without_a_restart(cp: ControlPlaneThread) -> None:
    tls = cp.server.tls
    assert tls is not None
    before = served_certificate(cp)
    with cp.client() as kept:
        assert kept.get("/healthz").status_code == 200
        assert not tls.refresh()  # nothing due yet
        assert tls.refresh(now=tls.renew_at + 1)  # past half-life
        after = served_certificate(cp)
        assert kept.get("/healthz").status_code == 200  # an open connection is not disturbed
    assert serial_hex(after) != serial_hex(before)
    assert serial_hex(after) == tls.serial


def test_new_handshakes_get_the_newest_context_trust_store_included(cp: ControlPlaneThread) -> None:
    """sni_callback swaps the SSLContext per handshake: certificate *and* client-CA store change."""
    tls = cp.server.tls
    assert tls is not None
    other = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    other.configure_trust(ctx)
    other.issue_cert("127.0.0.1").configure_cert(ctx)
    client_ctx = ssl.create_default_context()
    other.configure_trust(client_ctx)
    other.issue_cert("client.test").configure_cert(client_ctx)
    saved = tls.current
    tls.current = ctx
    try:
        with httpx.Client(base_url=cp.base_url, verify=client_ctx, timeout=5) as c:
            r = c.get("/healthz")  # the handshake passed: verified by the new store only
        # ...and the app then refuses a client certificate this CA never issued.
        assert r.status_code == 403 and r.json()["error"] == "client_cert_unknown"
    finally:
        tls.current = saved
    with pytest.raises(httpx.TransportError), httpx.Client(base_url=cp.base_url, verify=client_ctx) as c:
        c.get("/healthz")


def test_a_new_trust_bundle_rebuilds_the_context(tmp_path: Path) -> None:
    with ControlPlaneThread(tmp_path) as cp:
        tls = cp.server.tls
        assert tls is not None
        seq = tls.sequence
        done = cp.plane.maintain(now=time.time() + 16 * DAY)  # half an intermediate's life
        assert any("prepared next CA" in line for line in done)
        assert cp.plane.store.latest_bundle().sequence > seq  # type: ignore[union-attr]
        cp.server.maintain_once()
        assert tls.sequence > seq and tls.current is not tls.listener
        with cp.client() as c:
            assert c.get("/v1/trust").json()["bundle_sequence"] == tls.sequence
        key_dir = tls._dir
        assert key_dir.is_dir() and oct(key_dir.stat().st_mode & 0o777) == "0o700"
        assert list(key_dir.iterdir()) == []  # the key file is deleted as soon as it is loaded
    assert not key_dir.exists()


def test_serve_runs_until_sigterm_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    config_path, token = init_workdir(tmp_path, port)
    ControlPlane.open(load_config(config_path), tmp_path, initialize=True).close()
    (tmp_path / "ca").mkdir()
    plane = ControlPlane.open(load_config(config_path), tmp_path)
    (tmp_path / "ca" / "bundle.pem").write_bytes(plane.trust_anchors_pem())
    plane.close()
    code = "import asyncio, sys, pathlib; from garrison.control.server import serve; " \
        "sys.exit(asyncio.run(serve(pathlib.Path(sys.argv[1]))))"  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca" / "bundle.pem"))
        deadline = time.monotonic() + 15
        while True:
            try:
                r = httpx.post(f"https://127.0.0.1:{port}/v1/join-tokens", verify=ctx, timeout=2,
                               json={"spiffe_id": "spiffe://test.local/svc/orders"},
                               headers={"Authorization": f"Bearer {token}"})  # fmt: skip
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr and proc.stderr.read()
                time.sleep(0.1)
        assert r.status_code == 201
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and token not in stderr and r.json()["join_token"] not in stderr
    audit = (tmp_path / "audit.log").read_text()
    assert "join_token.create" in audit and r.json()["join_token"] not in audit
    with pytest.raises(httpx.TransportError):
        httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ctx, timeout=2)


def test_serve_reports_a_missing_store_without_a_traceback(tmp_path: Path) -> None:
    config_path, _ = init_workdir(tmp_path, free_port())
    code = "import asyncio, sys, pathlib; from garrison.control.server import serve; " \
        "sys.exit(asyncio.run(serve(pathlib.Path(sys.argv[1]))))"  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", code, str(config_path)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 1
    assert "garrison init" in out.stderr and "Traceback" not in out.stderr


def test_the_control_plane_fixture_serves_a_fresh_plane(control_plane: ControlPlaneThread) -> None:  # noqa: F811
    """How other suites use it: ``from support.control import control_plane`` (or via conftest)."""
    cp = control_plane
    assert cp.base_url == f"https://127.0.0.1:{cp.port}" == cp.plane.settings.base_url
    assert cp.ca_file.read_bytes() == cp.plane.trust_anchors_pem()
    assert (cp.workdir / "admin.token").stat().st_mode & 0o077 == 0
    with cp.client(headers=cp.admin_headers) as c:
        trust = c.get("/v1/trust").json()
        assert c.request("LIST", "/v1/svids").status_code == 200
    assert trust["trust_domain"] == cp.config.trust_domain and trust["revoked_serials"] == []
