"""SPIFFE bundle format (checklist X9, B1–B3): render and parse."""

from __future__ import annotations

import base64
import json

import pytest
from ca_kit import NOW
from cryptography.hazmat.primitives import serialization

from garrison.errors import IdentityError
from garrison.identity.ca import certs as c
from garrison.identity.ca import parse_bundle, render_bundle
from garrison.identity.ca.bundle import authority_jwk


@pytest.fixture
def root() -> object:
    return c.make_root(c.new_key(), "example.org", NOW, 86400)


def test_round_trip(root: object) -> None:
    doc = render_bundle([root], 7, 5)  # type: ignore[list-item]
    parsed = parse_bundle(doc)
    assert parsed.authorities == (root,) and parsed.sequence == 7 and parsed.refresh_hint == 5


def test_x9_jwk_has_use_and_one_x5c_and_no_kid(root: object) -> None:
    jwk = authority_jwk(root)  # type: ignore[arg-type]
    assert jwk["use"] == "x509-svid" and "kid" not in jwk
    der = root.public_bytes(serialization.Encoding.DER)  # type: ignore[attr-defined]
    assert jwk["x5c"] == [base64.b64encode(der).decode()]


def test_rsa_authority_is_rendered_as_an_rsa_jwk() -> None:
    from ca_kit import rsa_key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = rsa_key()
    name = x509.Name([])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(c.ts(NOW))
        .not_valid_after(c.ts(NOW + 60))
        .sign(key, hashes.SHA256())
    )
    jwk = authority_jwk(cert)
    assert jwk["kty"] == "RSA" and jwk["e"] == "AQAB"


def test_x9_entries_of_another_use_or_without_x5c_are_ignored(root: object) -> None:
    doc = json.loads(render_bundle([root], 1))  # type: ignore[list-item]
    doc["keys"] += [{"kty": "EC", "use": "jwt-svid", "kid": "a"}, {"kty": "EC", "use": "x509-svid"}]
    assert parse_bundle(json.dumps(doc)).authorities == (root,)


def test_b1_keys_must_be_present() -> None:
    with pytest.raises(IdentityError, match="keys"):
        parse_bundle('{"spiffe_sequence": 1}')


def test_b1_empty_bundle_trusts_nothing() -> None:
    assert parse_bundle('{"keys": []}').authorities == ()


def test_b3_duplicate_keys_are_refused(root: object) -> None:
    with pytest.raises(IdentityError, match="duplicate"):
        parse_bundle('{"keys": [], "keys": []}')


@pytest.mark.parametrize("doc", ["not json", '{"keys": [{"use": "x509-svid", "x5c": ["AAAA"]}]}'])
def test_garbage_is_an_identity_error(doc: str) -> None:
    with pytest.raises(IdentityError):
        parse_bundle(doc)
