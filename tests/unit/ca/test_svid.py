"""X.509-SVIDs: every §1b checklist row asserted on issued certificates; refused CSRs by behaviour."""

from __future__ import annotations

import pytest
from ca_kit import NOW, TD, WEB, make_csr, p256, rsa_key
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from garrison.identity.ca import (
    CaError,
    IssuedSvid,
    SvidError,
    WorkloadCA,
    check_csr,
    leaf_spiffe_id,
    parse_bundle,
)
from garrison.identity.ca.certs import load_cert_pem


@pytest.fixture
def svid(ca: WorkloadCA) -> IssuedSvid:
    return ca.issue(make_csr([WEB]), now=NOW)


def _ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(cls)


def test_X1_exactly_one_uri_san_and_no_other_san(svid: IssuedSvid) -> None:
    san = _ext(svid.certificate, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [WEB]
    assert len(list(san)) == 1


def test_X2_leaf_id_has_a_path_and_signing_certs_have_none(ca: WorkloadCA, svid: IssuedSvid) -> None:
    assert leaf_spiffe_id(svid.certificate, TD).path == "/svc/web"
    for cert in svid.intermediates:
        uris = _ext(cert, x509.SubjectAlternativeName).value
        assert isinstance(uris, x509.SubjectAlternativeName)
        assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TD}"]


def test_X3_empty_subject_so_the_san_is_critical(svid: IssuedSvid) -> None:
    assert len(svid.certificate.subject) == 0
    assert _ext(svid.certificate, x509.SubjectAlternativeName).critical


def test_X4_basic_constraints_leaf_false_signing_true(svid: IssuedSvid) -> None:
    bc = _ext(svid.certificate, x509.BasicConstraints)
    assert bc.critical and isinstance(bc.value, x509.BasicConstraints) and bc.value.ca is False
    for cert in svid.intermediates:
        v = _ext(cert, x509.BasicConstraints).value
        assert isinstance(v, x509.BasicConstraints) and v.ca is True


def test_X5_key_usage_critical_digital_signature_only(svid: IssuedSvid) -> None:
    ku = _ext(svid.certificate, x509.KeyUsage)
    assert ku.critical and isinstance(ku.value, x509.KeyUsage)
    assert ku.value.digital_signature
    assert not ku.value.key_cert_sign and not ku.value.crl_sign
    for cert in svid.intermediates:
        cku = _ext(cert, x509.KeyUsage)
        assert cku.critical and isinstance(cku.value, x509.KeyUsage) and cku.value.key_cert_sign


def test_X6_eku_server_and_client_auth(svid: IssuedSvid) -> None:
    eku = _ext(svid.certificate, x509.ExtendedKeyUsage).value
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_X7_chain_verifies_to_the_bundle_root(ca: WorkloadCA, svid: IssuedSvid) -> None:
    roots = parse_bundle(ca.bundle_document()).authorities
    inter = svid.intermediates[0]
    svid.certificate.verify_directly_issued_by(inter)
    assert any(inter.issuer == r.subject and _verifies(inter, r) for r in roots)


def _verifies(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:
        return False
    return True


def test_key_is_ec_p256_signed_with_ecdsa_sha256(svid: IssuedSvid) -> None:
    pk = svid.certificate.public_key()
    assert isinstance(pk, ec.EllipticCurvePublicKey) and isinstance(pk.curve, ec.SECP256R1)
    assert isinstance(svid.certificate.signature_hash_algorithm, hashes.SHA256)


def test_default_ttl_is_one_hour_and_not_before_is_backdated_10s(svid: IssuedSvid) -> None:
    c = svid.certificate
    assert c.not_valid_before_utc.timestamp() == NOW - 10
    assert c.not_valid_after_utc.timestamp() == NOW + 3600


def test_ttl_is_capped_by_the_intermediate_remaining_life(ca: WorkloadCA) -> None:
    inter_end = ca.issue(make_csr(), now=NOW).intermediates[0].not_valid_after_utc.timestamp()
    late = inter_end - 100
    svid = ca.issue(make_csr(), now=late)
    assert svid.not_after == inter_end


def test_no_issuance_after_the_intermediate_expired(ca: WorkloadCA) -> None:
    inter_end = ca.issue(make_csr(), now=NOW).intermediates[0].not_valid_after_utc.timestamp()
    with pytest.raises(CaError, match="expired"):
        ca.issue(make_csr(), now=inter_end + 1)


def test_serials_are_random_and_at_least_64_bits(ca: WorkloadCA) -> None:
    serials = {ca.issue(make_csr(), now=NOW).certificate.serial_number for _ in range(20)}
    assert len(serials) == 20
    assert all(s.bit_length() >= 64 and s > 0 for s in serials)


def test_requested_subject_and_extensions_are_not_copied(ca: WorkloadCA) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin")])
    svid = ca.issue(make_csr([WEB], subject=subject), now=NOW)
    assert len(svid.certificate.subject) == 0


def _csr_with_key(key: object) -> bytes:
    return make_csr([WEB], key=key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("csr", "match"),
    [
        pytest.param(lambda: _csr_with_key(rsa_key()), "EC P-256, got RSA-2048", id="csr-with-rsa-key"),
        pytest.param(
            lambda: _csr_with_key(ec.generate_private_key(ec.SECP384R1())),
            "EC P-256, got EC secp384r1",
            id="csr-with-p384-key",
        ),
        pytest.param(lambda: _csr_with_key(ed25519.Ed25519PrivateKey.generate()), "P-256", id="csr-ed25519"),
        pytest.param(
            lambda: make_csr([WEB, f"spiffe://{TD}/svc/db"]), "exactly one URI SAN", id="two-uri-sans"
        ),
        pytest.param(lambda: make_csr([WEB], dns=["web.example.org"]), "DNSName", id="dns-san"),
        pytest.param(lambda: make_csr([], dns=["web.example.org"]), "DNSName", id="dns-san-only"),
        pytest.param(lambda: make_csr(san=False), "no subjectAltName", id="no-san"),
        pytest.param(
            lambda: make_csr(["spiffe://Example.org/svc/web"]), "lower-case", id="uppercase-trust-domain"
        ),
        pytest.param(lambda: make_csr([f"spiffe://{TD}/svc/../admin"]), r"'\.\.'", id="dotdot-segment"),
        pytest.param(lambda: make_csr([f"spiffe://{TD}/svc//web"]), "empty segment", id="empty-segment"),
        pytest.param(lambda: make_csr([f"spiffe://{TD}/svc/web/"]), "trailing", id="trailing-slash"),
        pytest.param(lambda: make_csr([f"spiffe://{TD}/" + "a" * 2030]), "2048", id="id-over-2048-bytes"),
        pytest.param(
            lambda: make_csr(["spiffe://other.org/svc/web"]), "outside the trust domain", id="other-td"
        ),
        pytest.param(lambda: make_csr([f"spiffe://{TD}"]), "no path", id="trust-domain-id-as-leaf"),
        pytest.param(lambda: make_csr(["https://example.org/svc/web"]), "scheme", id="https-uri"),
        pytest.param(lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END", "parsed", id="garbage"),
    ],
)
def test_refused_csrs(ca: WorkloadCA, csr: object, match: str) -> None:
    data = csr()  # type: ignore[operator]
    with pytest.raises(SvidError, match=match):
        ca.issue(data, now=NOW)


def test_csr_with_a_bad_signature_is_refused() -> None:
    """Proof of possession: a CSR whose signature does not verify is refused."""
    good = x509.load_pem_x509_csr(make_csr([WEB]))
    der = bytearray(good.public_bytes(Encoding.DER))
    der[-3] ^= 0x01  # flip a bit inside the signature
    with pytest.raises(SvidError):
        check_csr(bytes(der), TD)


def test_der_csr_is_accepted() -> None:
    der = x509.load_pem_x509_csr(make_csr([WEB])).public_bytes(Encoding.DER)
    assert str(check_csr(der, TD).spiffe_id) == WEB


@pytest.mark.parametrize("why", ["ca-cert", "two-uris"])
def test_leaf_validation_rejects_non_svids(ca: WorkloadCA, why: str) -> None:
    svid = ca.issue(make_csr(), now=NOW)
    if why == "ca-cert":
        cert = svid.intermediates[0]  # X8: signing certificates never authenticate
    else:
        key = p256()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(x509.Name([]))
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(svid.certificate.not_valid_before_utc)
            .not_valid_after(svid.certificate.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_ext(svid.certificate, x509.KeyUsage).value, critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(WEB), x509.UniformResourceIdentifier(WEB + "2")]
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
    with pytest.raises(SvidError, match="not an SVID"):
        leaf_spiffe_id(cert, TD)


def test_chain_pem_is_leaf_then_intermediate(svid: IssuedSvid) -> None:
    pem = svid.chain_pem
    assert pem.count(b"BEGIN CERTIFICATE") == 2
    assert load_cert_pem(pem) == svid.certificate
