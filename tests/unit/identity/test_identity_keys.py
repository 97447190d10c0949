"""keys: JWK/JWKS/PEM loading, the key-type <-> algorithm tie (RFC 8725 §3.1), never an empty set."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from identity_kit import DROP, Kit, b64u
from jwt.algorithms import RSAAlgorithm

from garrison.config.models import StaticKey
from garrison.errors import KeySetError
from garrison.identity.keys import KeySet, key_from_jwk, load_static_keys, parse_jwks

ALL = ["ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"]


def jwks(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


@pytest.mark.parametrize(
    ("signer", "allowed", "expected"),
    [
        pytest.param("es256", ALL, {"ES256"}, id="p256-is-es256-only"),
        pytest.param("es384", ALL, {"ES384"}, id="p384-is-es384-only"),
        pytest.param("es512", ALL, {"ES512"}, id="p521-is-es512-only"),
        pytest.param(
            "rs256", ALL, {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, id="rsa-any-rsa-alg"
        ),
        pytest.param("rs256", ["RS256", "ES256"], {"RS256"}, id="rsa-narrowed-by-issuer"),
        pytest.param("eddsa", ALL, {"EdDSA"}, id="ed25519-is-eddsa"),
    ],
)
def test_key_type_decides_the_algorithms(
    kit: Kit, signer: str, allowed: list[str], expected: set[str]
) -> None:
    ks = parse_jwks(jwks(getattr(kit, signer).jwk()), allowed)
    (key,) = ks.candidates(getattr(kit, signer).kid)
    assert key.algorithms == expected
    assert not any(a.startswith("HS") or a.lower() == "none" for a in key.algorithms)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param({"alg": "PS256"}, {"PS256"}, id="alg-narrows-rsa-to-ps256"),
        pytest.param({"alg": "ES256"}, None, id="alg-of-another-key-type-skips-it"),
        pytest.param({"alg": "HS256"}, None, id="alg-hs256-skips-it"),
        pytest.param({"alg": "RSA-OAEP"}, None, id="encryption-alg-skips-it"),
        pytest.param({"alg": ["RS256"]}, None, id="alg-not-a-string-skips-it"),
        pytest.param({"use": "enc"}, None, id="use-enc-skipped"),
        pytest.param({"use": "sig"}, {"RS256", "PS256"}, id="use-sig-kept"),
        pytest.param({"key_ops": ["encrypt", "wrapKey"]}, None, id="key-ops-without-verify-skipped"),
        pytest.param({"key_ops": ["verify"]}, {"RS256", "PS256"}, id="key-ops-verify-kept"),
        pytest.param({"key_ops": "verify"}, None, id="key-ops-not-a-list-skipped"),
        pytest.param({"kid": 7}, None, id="non-string-kid-skipped"),
        pytest.param({"n": "AQAB"}, None, id="tiny-modulus-skipped"),
    ],
)
def test_jwk_members_narrow_or_skip(kit: Kit, extra: dict[str, Any], expected: set[str] | None) -> None:
    key = key_from_jwk(kit.rs256.jwk(**extra), ["RS256", "PS256"])
    assert (key.algorithms if key else None) == expected


def test_rsa_keys_below_2048_bits_are_skipped() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()  # noqa: S505 - the point of the test
    jwk = RSAAlgorithm.to_jwk(small, as_dict=True)
    assert key_from_jwk(jwk, ["RS256"]) is None


def test_unsupported_curve_and_kty_are_ignored(kit: Kit) -> None:
    k1 = ec.generate_private_key(ec.SECP256K1()).public_key().public_numbers()
    secp256k1 = {
        "kty": "EC",
        "crv": "secp256k1",
        "x": b64u(k1.x.to_bytes(32, "big")),
        "y": b64u(k1.y.to_bytes(32, "big")),
    }
    ks = parse_jwks(jwks(secp256k1, {"kty": "XYZ"}, {"kty": "EC", "crv": "P-256"}, kit.es256.jwk()), ALL)
    assert ks.count == 1


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(lambda k: k.es256.private_jwk(), id="ec-private-d"),
        pytest.param(lambda k: k.rs256.private_jwk(), id="rsa-private"),
        pytest.param(lambda k: k.eddsa.private_jwk(), id="okp-private-d"),
        pytest.param(lambda k: {"kty": "oct", "k": b64u(b"secret"), "kid": "h"}, id="symmetric-oct-key"),
    ],
)
def test_private_key_material_rejects_the_whole_set(kit: Kit, key: Any) -> None:
    with pytest.raises(KeySetError, match="private"):
        parse_jwks(jwks(kit.es256.jwk(), key(kit)), ALL)


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(b'{"keys": []}', id="empty-keys"),
        pytest.param(b"{}", id="no-keys-member"),
        pytest.param(b'{"keys": {}}', id="keys-not-a-list"),
        pytest.param(b'{"keys": [1, "a", null]}', id="keys-not-objects"),
        pytest.param(b"", id="empty-body"),
        pytest.param(b"<html>503 Service Unavailable</html>", id="html-error-page"),
        pytest.param(b"null", id="json-null"),
        pytest.param(b"[]", id="json-array"),
        pytest.param(b'{"keys": [], "keys": []}', id="duplicate-member"),
        pytest.param('{"keys": []}'.encode("utf-16"), id="utf-16"),
        pytest.param(b"\xff\xfe", id="not-utf-8"),
        pytest.param(
            b'{"keys": [{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]}', id="only-unusable"
        ),
    ],
)
def test_garbage_or_empty_jwks_is_an_error_never_an_empty_set(doc: bytes) -> None:
    with pytest.raises(KeySetError):
        parse_jwks(doc, ALL)


def test_a_jwks_with_a_key_for_another_algorithm_only_is_an_error(kit: Kit) -> None:
    with pytest.raises(KeySetError, match="no usable key"):
        parse_jwks(jwks(kit.rs256.jwk()), ["ES256"])


def test_keyset_lookup_is_by_kid_then_kidless(kit: Kit) -> None:
    ks = parse_jwks(jwks(kit.es256.jwk(), kit.rs256.jwk(), kit.eddsa.jwk(kid=DROP)), ALL)
    assert [k.kid for k in ks.candidates("ec-1")] == ["ec-1"]
    assert [k.kid for k in ks.candidates("missing")] == [None]
    assert [k.kid for k in ks.candidates(None)] == [None]
    assert "rsa-1" in ks
    assert "missing" not in ks
    assert ks.kids == {"ec-1", "rsa-1"}
    assert len(ks) == 3
    assert "ec-1" in repr(ks)


def test_same_kid_twice_keeps_both_keys(kit: Kit) -> None:
    ks = parse_jwks(jwks(kit.es256.jwk(kid="k"), kit.rs256.jwk(kid="k")), ALL)
    assert len(ks.candidates("k")) == 2


def test_fingerprint_changes_only_with_the_keys(kit: Kit) -> None:
    a = parse_jwks(jwks(kit.es256.jwk(), kit.rs256.jwk()), ALL)
    b = parse_jwks(jwks(kit.es256.jwk(), kit.rs256.jwk()), ALL)
    c = parse_jwks(jwks(kit.es256.jwk()), ALL)
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_a_keyset_is_never_empty() -> None:
    with pytest.raises(KeySetError):
        KeySet([])


# -- static keys from garrison.yaml ------------------------------------------------------------
def test_static_pem_inline_file_certificate_and_jwk(kit: Kit, tmp_path: Path) -> None:
    pem_file = tmp_path / "ec.pem"
    pem_file.write_bytes(kit.es256.public_pem())
    der = kit.attacker.self_signed_cert_der()
    cert_pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()
    ks = load_static_keys(
        [
            StaticKey(kid="file", pem_file=str(pem_file)),
            StaticKey(kid="inline", pem=kit.rs256.public_pem().decode()),
            StaticKey(kid="cert", pem=cert_pem),
            StaticKey(kid="override", jwk=kit.eddsa.jwk()),
        ],
        ALL,
    )
    assert ks.kids == {"file", "inline", "cert", "override"}
    assert ks.candidates("cert")[0].algorithms == {"ES256"}


@pytest.mark.parametrize(
    ("key", "match"),
    [
        pytest.param(lambda k, p: StaticKey(pem="not a pem"), "unreadable", id="garbage-pem"),
        pytest.param(
            lambda k, p: StaticKey(pem_file=str(p / "missing.pem")), "cannot read", id="missing-file"
        ),
        pytest.param(
            lambda k, p: StaticKey(
                pem=k.es256.private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode()
            ),
            "private key",
            id="private-pem",
        ),
        pytest.param(
            lambda k, p: StaticKey(pem=k.rs256.public_pem().decode()), "none of", id="rsa-for-es256-issuer"
        ),
        pytest.param(lambda k, p: StaticKey(jwk=k.es256.private_jwk()), "private", id="private-jwk"),
        pytest.param(
            lambda k, p: StaticKey(jwk=k.rs256.jwk()), "not a usable", id="rsa-jwk-for-es256-issuer"
        ),
    ],
)
def test_a_bad_static_key_is_an_error(kit: Kit, tmp_path: Path, key: Any, match: str) -> None:
    with pytest.raises(KeySetError, match=match):
        load_static_keys([key(kit, tmp_path)], ["ES256"])


# -- no lower-layer exception escapes (STYLE §5) ----------------------------------------------
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=20,
)
JWK_MEMBERS = st.fixed_dictionaries(
    {},
    optional={
        "kty": st.sampled_from(["EC", "RSA", "OKP", "oct", "x"]) | JSONISH,
        "crv": st.sampled_from(["P-256", "P-384", "P-521", "Ed25519", "Ed448", "secp256k1"]) | JSONISH,
        "x": st.binary(max_size=70).map(b64u) | JSONISH,
        "y": st.binary(max_size=70).map(b64u) | JSONISH,
        "n": st.binary(max_size=300).map(b64u) | JSONISH,
        "e": st.sampled_from(["AQAB", "Aw", ""]) | JSONISH,
        "alg": st.sampled_from(ALL) | JSONISH,
        "use": JSONISH,
        "key_ops": JSONISH,
        "kid": JSONISH,
    },
)


@settings(deadline=None)  # a loaded CI box must not turn slow into failed
@given(st.lists(JWK_MEMBERS, max_size=4))
def test_any_jwks_gives_a_keyset_or_key_set_error(keys: list[dict[str, Any]]) -> None:
    with contextlib.suppress(KeySetError):
        assert parse_jwks(jwks(*keys), ALL).count >= 1


@settings(deadline=None)  # a loaded CI box must not turn slow into failed
@given(st.binary(max_size=200))
def test_any_bytes_give_a_keyset_or_key_set_error(doc: bytes) -> None:
    with contextlib.suppress(KeySetError):
        parse_jwks(doc, ALL)
