"""X.509-SVIDs: check a workload's CSR, build its SVID, and validate a presented SVID leaf.

No I/O, clock injected. Each rule cites SPIFFE X509-SVID (standards/X509-SVID.md); the checklist
rows X1–X7 of research/identity-secrets-anchors.md §1b are asserted in tests/unit/ca.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from garrison.errors import IdentityError
from garrison.identity.ca.certs import BACKDATE, chain_pem, random_serial, serial_hex, ts
from garrison.identity.ca.errors import CaError, SvidError
from garrison.identity.ca.spiffe_id import SpiffeId

DEFAULT_SVID_TTL = 3600.0  # ARCHITECTURE §3: 1 h
MAX_CSR_BYTES = 16_384
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}")

_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,  # X509-SVID §4.3: leaf MUST set digitalSignature
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,  # X509-SVID §4.3: leaf MUST NOT set keyCertSign or cRLSign
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True, slots=True)
class CheckedCsr:
    """A CSR whose signature verified, with a P-256 key and exactly one valid SPIFFE ID."""

    spiffe_id: SpiffeId
    public_key: ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class IssuedSvid:
    """An SVID and the chain a workload presents (leaf + intermediate; the root is in the bundle)."""

    certificate: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    spiffe_id: SpiffeId
    serial: str
    # The SPIFFE bundle document that was the latest published one in the issuance transaction
    # (it holds this SVID's intermediate and root): what the workload is handed with its chain.
    bundle_document: str = ""

    @property
    def not_after(self) -> float:
        return self.certificate.not_valid_after_utc.timestamp()

    @property
    def chain_pem(self) -> bytes:
        return chain_pem((self.certificate, *self.intermediates))


def _key_kind(pk: object) -> str:
    if isinstance(pk, rsa.RSAPublicKey):
        return f"RSA-{pk.key_size}"
    if isinstance(pk, ec.EllipticCurvePublicKey):
        return f"EC {pk.curve.name}"
    return type(pk).__name__


def _parse_spiffe_id(uri: str, trust_domain: str) -> SpiffeId:
    try:
        sid = SpiffeId(uri)
    except IdentityError as e:
        raise SvidError(str(e)) from None
    if not sid.member_of(trust_domain):
        raise SvidError(f"SPIFFE ID {sid} is outside the trust domain {trust_domain!r}")
    if sid.is_root:
        # X509-SVID §2: "Leaf certificate SPIFFE IDs MUST have a non-root path component."
        raise SvidError(f"SPIFFE ID {sid} has no path: the trust domain itself is not a workload")
    return sid


def check_csr(data: bytes | str, trust_domain: str) -> CheckedCsr:
    """Parse (PEM or DER) and check a workload CSR; ``SvidError`` says exactly what is wrong."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_CSR_BYTES:
        raise SvidError("CSR is too large")
    try:
        csr = (
            x509.load_pem_x509_csr(raw) if raw.lstrip().startswith(b"-----") else x509.load_der_x509_csr(raw)
        )
        signature_ok = csr.is_signature_valid
        pk = csr.public_key()
        ext = csr.extensions
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType) as e:
        raise SvidError(f"CSR cannot be parsed: {e}") from None
    if not signature_ok:
        raise SvidError("CSR signature does not verify (proof of possession failed)")
    if not isinstance(pk, ec.EllipticCurvePublicKey) or not isinstance(pk.curve, ec.SECP256R1):
        raise SvidError(f"CSR key must be EC P-256, got {_key_kind(pk)}")
    try:
        san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise SvidError("CSR has no subjectAltName: it must carry the SPIFFE ID as its one URI SAN") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    others = [type(n).__name__ for n in san if not isinstance(n, x509.UniformResourceIdentifier)]
    if others:
        raise SvidError(f"CSR may only carry one URI SAN; it also has {', '.join(sorted(set(others)))}")
    if len(uris) != 1:
        # X509-SVID §2: "An X.509 SVID MUST contain exactly one URI SAN"
        raise SvidError(f"CSR must carry exactly one URI SAN, got {len(uris)}")
    return CheckedCsr(_parse_spiffe_id(uris[0], trust_domain), pk)


def build_svid(
    req: CheckedCsr,
    issuer_cert: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: float,
    ttl: float = DEFAULT_SVID_TTL,
    server_names: Sequence[str] = (),
) -> IssuedSvid:
    """Sign an SVID for ``req``: TTL capped by the issuer's remaining life, notBefore backdated.

    ``server_names`` (DNS names or IP literals) are added as further SANs, which X509-SVID §2
    permits, so ordinary TLS clients can verify a server by host name (the control plane's API,
    a gateway listener). Only admin issuance passes them; workload CSRs never choose them.
    """
    issuer_end = issuer_cert.not_valid_after_utc.timestamp()
    not_after = min(float(int(now + ttl)), issuer_end)
    if not_after <= now:
        raise CaError("the signing CA has expired; rotate it before issuing")
    issuer_pk = issuer_key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))  # minimal subject; so SAN is critical (X509-SVID §2)
        .issuer_name(issuer_cert.subject)
        .public_key(req.public_key)
        .serial_number(random_serial())
        .not_valid_before(ts(now - BACKDATE))
        .not_valid_after(ts(not_after))
        # X509-SVID §4.1: leaf certificates MUST set cA to false
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # X509-SVID §4.3: key usage MUST be set and critical
        .add_extension(_LEAF_KEY_USAGE, critical=True)
        # X509-SVID §4.4: when EKU is present, serverAuth and clientAuth MUST be set
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        # X509-SVID §2: exactly one URI SAN; critical because the subject is empty (RFC 5280 §4.2.1.6)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(str(req.spiffe_id)), *_server_sans(server_names)]
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(req.public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_pk), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return IssuedSvid(cert, (issuer_cert,), req.spiffe_id, serial_hex(cert))


def _server_sans(names: Sequence[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            if not _DNS_NAME.fullmatch(n):
                raise SvidError(f"server name {n[:80]!r} is neither an IP literal nor a DNS name") from None
            out.append(x509.DNSName(n.lower()))
    return out


def leaf_spiffe_id(cert: x509.Certificate, trust_domain: str) -> SpiffeId:
    """X509-SVID §5.2 leaf validation (beyond the chain): one URI SAN with a valid SPIFFE ID and a
    path, cA=false, keyUsage critical with digitalSignature and neither keyCertSign nor cRLSign."""
    ext = cert.extensions
    try:
        bc = ext.get_extension_for_class(x509.BasicConstraints).value
        ku_ext = ext.get_extension_for_class(x509.KeyUsage)
        san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as e:
        raise SvidError(f"not an SVID: extension {e.oid.dotted_string} is missing") from None
    if bc.ca:
        raise SvidError("not an SVID: a CA certificate cannot authenticate (X509-SVID §5.2)")
    ku = ku_ext.value
    if not ku_ext.critical or not ku.digital_signature or ku.key_cert_sign or ku.crl_sign:
        raise SvidError("not an SVID: keyUsage must be critical digitalSignature only (X509-SVID §4.3)")
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise SvidError(f"not an SVID: {len(uris)} URI SANs (X509-SVID §2 requires exactly one)")
    return _parse_spiffe_id(uris[0], trust_domain)


__all__ = ["DEFAULT_SVID_TTL", "CheckedCsr", "IssuedSvid", "build_svid", "check_csr", "leaf_spiffe_id"]
