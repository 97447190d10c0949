"""Issued SVIDs checked by independent oracles: ``openssl verify`` / ``openssl x509 -text`` and
py-spiffe's ``X509Svid.parse``; plus every §1a/§1b checklist row asserted on a real issuance."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import spiffe

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "ca"))

from ca_kit import TD, WEB, key_pem, make_csr, new_ca, p256

from garrison.errors import IdentityError
from garrison.identity.ca import IssuedSvid, SvidError, WorkloadCA, parse_bundle
from garrison.identity.ca import certs as c
from garrison.store import Store

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl binary not installed")


@pytest.fixture
def ca(tmp_path: Path) -> Iterator[WorkloadCA]:
    store = Store.open(tmp_path / "g.db")
    ca = new_ca(store)
    ca.initialize()  # real clock: openssl checks validity against the wall clock
    yield ca
    store.close()


@pytest.fixture
def issued(ca: WorkloadCA, tmp_path: Path) -> tuple[IssuedSvid, bytes]:
    key = p256()
    token = ca.create_join_token(WEB)
    svid = ca.redeem_join_token(token, make_csr([WEB], key=key))
    (tmp_path / "svid.pem").write_bytes(c.chain_pem([svid.certificate]))
    (tmp_path / "intermediate.pem").write_bytes(c.chain_pem(svid.intermediates))
    roots = parse_bundle(ca.bundle_document()).authorities
    (tmp_path / "root.pem").write_bytes(c.chain_pem(roots))
    return svid, key_pem(key)


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *args], capture_output=True, text=True, timeout=30, check=False)


@needs_openssl
@pytest.mark.parametrize("purpose", [None, "sslclient", "sslserver"])
def test_openssl_verifies_the_chain(issued: object, tmp_path: Path, purpose: str | None) -> None:
    args = ["verify", "-x509_strict", "-CAfile", "root.pem", "-untrusted", "intermediate.pem"]
    if purpose:
        args += ["-purpose", purpose]
    done = _openssl(
        *[str(tmp_path / a) if a.endswith(".pem") else a for a in args], str(tmp_path / "svid.pem")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("OK")


@needs_openssl
def test_openssl_rejects_the_svid_under_another_root(issued: object, tmp_path: Path) -> None:
    """The oracle discriminates: another CA's bundle does not verify our SVID."""
    other = c.make_root(c.new_key(), TD, time.time(), 86400)
    (tmp_path / "other.pem").write_bytes(c.chain_pem([other]))
    done = _openssl(
        "verify",
        "-CAfile",
        str(tmp_path / "other.pem"),
        "-untrusted",
        str(tmp_path / "intermediate.pem"),
        str(tmp_path / "svid.pem"),
    )
    assert done.returncode != 0


def test_py_spiffe_parses_the_svid(issued: tuple[IssuedSvid, bytes]) -> None:
    svid, key = issued
    parsed = spiffe.X509Svid.parse(svid.chain_pem, key)
    assert str(parsed.spiffe_id) == WEB
    assert parsed.leaf == svid.certificate
    assert len(parsed.cert_chain) == 2


def test_py_spiffe_parses_the_bundle_roots(ca: WorkloadCA) -> None:
    roots = parse_bundle(ca.bundle_document()).authorities
    bundle = spiffe.X509Bundle.parse(spiffe.TrustDomain(TD), c.chain_pem(roots))
    assert set(bundle.x509_authorities) == set(roots)


# -- every §1a/§1b checklist row on a real issuance, read back by openssl ------------------------------
def _text(tmp_path: Path, name: str) -> str:
    done = _openssl("x509", "-noout", "-text", "-in", str(tmp_path / name))
    assert done.returncode == 0, done.stderr
    return done.stdout


def _ext_block(text: str, title: str) -> str:
    m = re.search(rf"X509v3 {title}:( critical)? *\n\s+(.*)", text)
    assert m, f"{title} missing"
    return ("critical " if m.group(1) else "") + m.group(2)


@needs_openssl
def test_every_checklist_row_on_issued_certificates(
    ca: WorkloadCA, issued: tuple[IssuedSvid, bytes], tmp_path: Path
) -> None:
    leaf = _text(tmp_path, "svid.pem")
    inter = _text(tmp_path, "intermediate.pem")
    rows: dict[str, bool] = {}
    san = _ext_block(leaf, "Subject Alternative Name")
    # X1: exactly one URI SAN, nothing else
    rows["X1"] = san == f"critical URI:{WEB}"
    # X2: leaf ID has a path; signing cert's ID has none
    rows["X2"] = _ext_block(inter, "Subject Alternative Name").endswith(f"URI:spiffe://{TD}")
    # X3: empty subject => SAN critical
    rows["X3"] = re.search(r"Subject: *\n", leaf) is not None and san.startswith("critical")
    # X4: cA false (leaf), true (signing), critical
    rows["X4"] = _ext_block(leaf, "Basic Constraints") == "critical CA:FALSE" and _ext_block(
        inter, "Basic Constraints"
    ).startswith("critical CA:TRUE")
    # X5: key usage critical; leaf digitalSignature only; signing has Certificate Sign
    rows["X5"] = _ext_block(
        leaf, "Key Usage"
    ) == "critical Digital Signature" and "Certificate Sign" in _ext_block(inter, "Key Usage")
    # X6: EKU serverAuth + clientAuth
    rows["X6"] = (
        _ext_block(leaf, "Extended Key Usage")
        == "TLS Web Server Authentication, TLS Web Client Authentication"
    )
    # X7: RFC 5280 path validation (openssl) + the leaf checks (ours)
    done = _openssl(
        "verify",
        "-x509_strict",
        "-CAfile",
        str(tmp_path / "root.pem"),
        "-untrusted",
        str(tmp_path / "intermediate.pem"),
        str(tmp_path / "svid.pem"),
    )
    rows["X7"] = done.returncode == 0
    # X8: a signing certificate never authenticates (renewal with it is refused)
    try:
        ca.renew(make_csr([WEB]), list(issued[0].intermediates))
        rows["X8"] = False
    except SvidError:
        rows["X8"] = True
    # key, TTL, backdate, serial
    rows["P-256"] = "ASN1 OID: prime256v1" in leaf
    svid = issued[0].certificate
    life = svid.not_valid_after_utc.timestamp() - svid.not_valid_before_utc.timestamp()
    rows["ttl-1h+10s-backdate"] = life == 3610
    rows["serial>=64bit"] = svid.serial_number.bit_length() >= 64
    # ID1–ID4 (§1a): the CA refuses to issue such IDs
    for row, bad in (
        ("ID1", f"spiffe://{TD}/x?q"),
        ("ID2", "spiffe://Example.org/x"),
        ("ID3", f"spiffe://{TD}/a/../b"),
        ("ID4", f"spiffe://{TD}/" + "a" * 2030),
    ):
        try:
            ca.issue(make_csr([bad]))
            rows[row] = False
        except IdentityError:
            rows[row] = True
    failed = sorted(k for k, ok in rows.items() if not ok)
    assert failed == [], failed
