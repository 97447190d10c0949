"""Sans-IO building blocks for CA certificates: keys, names, root/intermediate certs and CSRs.

No I/O, clock injected (``now``: epoch seconds). Signing certificates follow X509-SVID §4:
cA=true, keyUsage keyCertSign (+cRLSign) critical, and a URI SAN of the bare trust domain ID.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

BACKDATE = 10.0  # seconds; absorbs clock skew between the CA and validators


def ts(now: float) -> datetime:
    """Epoch seconds -> an aware UTC datetime at whole-second precision (X.509 time resolution)."""
    return datetime.fromtimestamp(int(now), UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def random_serial() -> int:
    """RFC 5280 §4.1.2.2: positive, ≤ 20 octets. 158 random bits with the top bit set (never short)."""
    return secrets.randbits(158) | (1 << 158)


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """A stable id for a CA key: SHA-256 of its SubjectPublicKeyInfo, 32 hex chars."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()[:32]


def private_key_der(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key_der(der: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("CA keys are EC keys")
    return key


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def load_cert_pem(pem: str | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def load_cert_chain(pem: str | bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode() if isinstance(pem, str) else pem)


def ca_name(trust_domain: str, role: str, kid: str) -> x509.Name:
    """Distinct per key, so a rotated CA never shares a subject with its predecessor."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "garrison"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{trust_domain} {role} {kid[:16]}"),
        ]
    )


def _ca_extensions(
    b: x509.CertificateBuilder,
    public_key: ec.EllipticCurvePublicKey,
    trust_domain: str,
    path_length: int,
) -> x509.CertificateBuilder:
    return (
        b.add_extension(
            x509.BasicConstraints(ca=True, path_length=path_length), critical=True
        )  # X509-SVID §4.1
        .add_extension(
            # X509-SVID §4.3: signing certs MUST set keyCertSign; the extension MUST be critical
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        # X509-SVID §2: a signing certificate's SPIFFE ID MUST NOT have a path
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]),
            critical=False,
        )
    )


def make_root(key: ec.EllipticCurvePrivateKey, trust_domain: str, now: float, ttl: float) -> x509.Certificate:
    name = ca_name(trust_domain, "root", key_id(key.public_key()))
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(ts(now - BACKDATE))
        .not_valid_after(ts(now + ttl))
    )
    b = _ca_extensions(b, key.public_key(), trust_domain, path_length=1)
    return b.sign(key, hashes.SHA256())


def make_intermediate(
    public_key: ec.EllipticCurvePublicKey,
    trust_domain: str,
    root_cert: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    now: float,
    ttl: float,
) -> x509.Certificate:
    """An intermediate signed by ``root_key``; never outlives the root (RFC 5280 §6.1.3)."""
    not_after = min(now + ttl, root_cert.not_valid_after_utc.timestamp())
    b = (
        x509.CertificateBuilder()
        .subject_name(ca_name(trust_domain, "intermediate", key_id(public_key)))
        .issuer_name(root_cert.subject)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(ts(now - BACKDATE))
        .not_valid_after(ts(not_after))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_ec_public(root_cert)), critical=False
        )
    )
    b = _ca_extensions(b, public_key, trust_domain, path_length=0)
    return b.sign(root_key, hashes.SHA256())


def make_intermediate_csr(
    key: ec.EllipticCurvePrivateKey, trust_domain: str
) -> x509.CertificateSigningRequest:
    """A CSR for an external (offline) root to sign: asks for cA=true, pathLen 0, keyCertSign."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(ca_name(trust_domain, "intermediate", key_id(key.public_key())))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )


def _ec_public(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    pk = cert.public_key()
    if not isinstance(pk, ec.EllipticCurvePublicKey):
        raise TypeError("garrison-made CA certificates carry EC keys")
    return pk


def is_signing_cert(cert: x509.Certificate) -> bool:
    """X509-SVID §4.1/§4.3: cA=true and keyCertSign."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return bc.ca and ku.key_cert_sign


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True if ``issuer``'s key signed ``cert`` (and the names chain)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):  # name mismatch, unsupported key, bad signature
        return False
    return True


def spki(obj: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    """The DER SubjectPublicKeyInfo of a certificate or CSR (to compare keys)."""
    return obj.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def chain_pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


__all__ = [
    "BACKDATE",
    "ca_name",
    "cert_pem",
    "chain_pem",
    "is_signing_cert",
    "issued_by",
    "key_id",
    "load_cert_chain",
    "load_cert_pem",
    "load_private_key_der",
    "make_intermediate",
    "make_intermediate_csr",
    "make_root",
    "new_key",
    "private_key_der",
    "random_serial",
    "serial_hex",
    "spki",
    "ts",
]
