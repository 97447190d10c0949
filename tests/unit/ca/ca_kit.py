"""Helpers for CA tests: CSR builders, a fixed clock, and a CA on a fresh store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from garrison.identity.ca import CaSettings, Kek, WorkloadCA
from garrison.store import Store

TD = "example.org"
NOW = 1_800_000_000.0  # 2027-01-15, a fixed clock for every test
WEB = f"spiffe://{TD}/svc/web"
DB = f"spiffe://{TD}/svc/db"


def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(
    uris: Sequence[str] = (WEB,),
    *,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    dns: Sequence[str] = (),
    subject: x509.Name | None = None,
    san: bool = True,
) -> bytes:
    key = key or p256()
    b = x509.CertificateSigningRequestBuilder().subject_name(subject or x509.Name([]))
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns]
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    algo = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return b.sign(key, algo).public_bytes(serialization.Encoding.PEM)


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def new_ca(store: Store, kek: Kek | None = None, **settings: float) -> WorkloadCA:
    return WorkloadCA(store, kek or Kek(b"k" * 32), CaSettings(TD, **settings))  # type: ignore[arg-type]


def sqlite_store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "garrison.db")
