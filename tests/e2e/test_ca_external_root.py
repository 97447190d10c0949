"""An offline root: `garrison ca csr` → the root signs with `openssl x509 -req` → `garrison ca install`.

The root key never touches garrison. After install the intermediate signs SVIDs that `openssl verify`
accepts against the external root alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from garrison.config.loader import load_config
from garrison.control.plane import ControlPlane
from support.control import free_port, init_workdir

GARRISON = [sys.executable, "-m", "garrison.cli.main"]

pytestmark = pytest.mark.timeout(60)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GARRISON, *args], cwd=cwd, capture_output=True, text=True, timeout=30)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def test_ca_init_creates_an_online_root_in_a_store_without_one(tmp_path: Path) -> None:
    config, _ = init_workdir(tmp_path, free_port(), trust_domain="online.test")
    first = run("ca", "init", "-c", str(config), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "ca" / "bundle.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    again = run("ca", "init", "-c", str(config), cwd=tmp_path)
    assert again.returncode == 1 and "already initialized" in again.stderr


def test_intermediate_signed_by_an_offline_root(tmp_path: Path) -> None:
    setup = tmp_path / "setup"
    made = run(
        "init", str(setup), "--trust-domain", "offline.test", "--external-root",
        "--control-plane-address", f"127.0.0.1:{free_port()}",
        "--gateway-address", f"127.0.0.1:{free_port()}",
        cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    config = setup / "garrison.yaml"
    assert not (setup / "ca" / "bundle.pem").exists()  # nothing to trust until the root signs
    (tmp_path / "inter.csr").write_text((setup / "ca" / "intermediate.csr").read_text())
    # Before an intermediate is installed, status says so (and fails), and the control plane refuses to open.
    st = run("ca", "status", "-c", str(config), cwd=tmp_path)
    assert st.returncode == 1 and "no current intermediate" in st.stderr
    cp = run("control-plane", "-c", str(config), cwd=tmp_path)
    assert cp.returncode != 0 and "garrison ca install" in cp.stderr and "Traceback" not in cp.stderr
    assert (tmp_path / "inter.csr").read_text().startswith("-----BEGIN CERTIFICATE REQUEST-----")

    # The external root (openssl, not garrison) signs the CSR as a CA certificate.
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root.key", cwd=tmp_path)
    openssl(
        "req", "-x509", "-new", "-key", "root.key", "-subj", "/O=offline root", "-days", "30",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", "root.pem", cwd=tmp_path,
    )  # fmt: skip
    (tmp_path / "ext.cnf").write_text(
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    openssl(
        "x509", "-req", "-in", "inter.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial",
        "-days", "7", "-extfile", "ext.cnf", "-out", "inter.pem", cwd=tmp_path,
    )  # fmt: skip

    # Installing without the root the first time is refused with a clear message.
    bad = run("ca", "install", "-c", str(config), "--cert", "inter.pem", cwd=tmp_path)
    assert bad.returncode != 0 and "external root" in bad.stderr and "Traceback" not in bad.stderr
    ok = run("ca", "install", "-c", str(config), "--cert", "inter.pem", "--root", "root.pem", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "current (signing)" in ok.stdout
    assert run("ca", "status", "-c", str(config), cwd=tmp_path).returncode == 0

    plane = ControlPlane.open(load_config(config), setup)
    try:
        creds = plane.issue_credentials("spiffe://offline.test/svc/orders")
    finally:
        plane.close()
    (tmp_path / "svid.pem").write_bytes(creds.chain_pem)
    leaf, _, rest = creds.chain_pem.partition(b"-----END CERTIFICATE-----\n")
    (tmp_path / "leaf.pem").write_bytes(leaf + b"-----END CERTIFICATE-----\n")
    (tmp_path / "chain.pem").write_bytes(rest)
    v = subprocess.run(
        ["openssl", "verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert v.returncode == 0 and "leaf.pem: OK" in v.stdout, v.stdout + v.stderr
    # The trust anchors written for clients are the external root itself.
    assert (setup / "ca" / "bundle.pem").read_text().strip() == (tmp_path / "root.pem").read_text().strip()
