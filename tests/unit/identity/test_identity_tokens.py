"""TokenVerifier: RFC 8725 pitfalls P1-P11, P13 (research §3f) as tables, plus the happy paths."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from identity_kit import AUD, DROP, ISS, NOW, Kit, TokenFactory, b64u, b64u_json, claims, mint, sign_raw

from garrison.config.models import Issuer, StaticKey
from garrison.errors import KeySetError, TokenError
from garrison.identity.tokens import MAX_TOKEN_CHARS, TokenVerifier, parse_compact
from garrison.reasons import Reason


def reason_of(verifier: TokenVerifier, token: str, now: float = NOW) -> Reason:
    with pytest.raises(TokenError) as ei:
        verifier.verify(token, now)
    return ei.value.reason


def unsigned(header: dict[str, Any], payload: dict[str, Any] | None = None, sig: str = "") -> str:
    return f"{b64u_json(header)}.{b64u_json(payload or claims())}.{sig}"


def hs_signed(alg: str, secret: bytes, kid: str) -> str:
    """HMAC built by hand, so that PyJWT's own HMAC-key guard is not what is tested (P2)."""
    head = b64u_json({"alg": alg, "kid": kid, "typ": "JWT"})
    body = b64u_json(claims())
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    mac = hmac.new(secret, f"{head}.{body}".encode(), digest).digest()
    return f"{head}.{body}.{b64u(mac)}"


def _three_issuer_keys(kit: Kit) -> TokenVerifier:
    return kit.verifier(kit.es256, kit.rs256, kit.eddsa)


# -- P1: alg none in any case, unsigned and with a bogus signature -------------------------------
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("sig", ["", "c2lnbmF0dXJl"], ids=["unsigned", "bogus-signature"])
def test_should_fail_because_alg_is_none_in_any_case(kit: Kit, alg: str, sig: str) -> None:
    token = unsigned({"alg": alg, "kid": kit.es256.kid}, sig=sig)
    assert reason_of(_three_issuer_keys(kit), token) is Reason.TOKEN_BAD_ALGORITHM


# -- P2 / P3: algorithm confusion and alg not tied to the key ----------------------------------
ALG_CONFUSION = [
    pytest.param(
        lambda k: hs_signed("HS256", k.es256.public_pem(), k.es256.kid), id="hs256-keyed-with-ec-public-pem"
    ),
    pytest.param(
        lambda k: hs_signed("HS256", k.rs256.public_pem(), k.rs256.kid), id="hs256-keyed-with-rsa-public-pem"
    ),
    pytest.param(
        lambda k: hs_signed("HS256", json.dumps(k.rs256.jwk()).encode(), k.rs256.kid),
        id="hs256-keyed-with-rsa-jwk-json",
    ),
    pytest.param(
        lambda k: hs_signed("HS256", json.dumps(k.es256.jwk()).encode(), k.es256.kid),
        id="hs256-keyed-with-ec-jwk-json",
    ),
    pytest.param(
        lambda k: hs_signed("HS512", k.rs256.public_pem(), k.rs256.kid), id="hs512-keyed-with-rsa-public-pem"
    ),
    pytest.param(
        lambda k: mint(k.rs256, alg="RS256", kid=k.es256.kid), id="rs256-header-with-the-es256-key-kid"
    ),
    pytest.param(lambda k: mint(k.ps256, kid=k.es256.kid), id="ps256-not-in-the-issuer-allowlist"),
    pytest.param(lambda k: mint(k.es384), id="es384-not-in-the-issuer-allowlist"),
    pytest.param(lambda k: unsigned({"kid": k.es256.kid}, sig="AAAA"), id="no-alg-at-all"),
]


@pytest.mark.parametrize("make", ALG_CONFUSION)
def test_should_fail_because_the_algorithm_is_not_allowed(kit: Kit, make: TokenFactory) -> None:
    reason = reason_of(_three_issuer_keys(kit), make(kit))
    assert reason in (Reason.TOKEN_BAD_ALGORITHM, Reason.TOKEN_MALFORMED)
    if "alg" in parse_compact(make(kit)).header:
        assert reason is Reason.TOKEN_BAD_ALGORITHM


def test_should_fail_because_an_rs256_token_reaches_an_es256_only_issuer(kit: Kit) -> None:
    es_only = kit.verifier(kit.es256, algorithms=["ES256"])
    assert reason_of(es_only, mint(kit.rs256)) is Reason.TOKEN_BAD_ALGORITHM
    assert reason_of(es_only, mint(kit.rs256, kid=kit.es256.kid)) is Reason.TOKEN_BAD_ALGORITHM


def test_should_fail_because_the_es256_key_is_used_with_an_rs256_header(kit: Kit) -> None:
    """RFC 8725 §3.1: the key found by kid only verifies its own algorithm (RS256 is allowed here)."""
    verifier = kit.verifier(kit.es256, kit.rs256)
    assert reason_of(verifier, mint(kit.rs256, kid=kit.es256.kid)) is Reason.TOKEN_BAD_ALGORITHM
    assert reason_of(verifier, mint(kit.es256, kid=kit.rs256.kid)) is Reason.TOKEN_BAD_ALGORITHM


# -- P4: kid injection -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "kid",
    [
        pytest.param("../../dev/null", id="path-traversal"),
        pytest.param("/etc/passwd", id="absolute-path"),
        pytest.param("' OR 1=1--", id="sql-injection"),
        pytest.param("*)(uid=*))(|(uid=*", id="ldap-injection"),
        pytest.param("ec-1\x00", id="nul-suffix"),
        pytest.param("EC-1", id="other-case"),
        pytest.param("", id="empty"),
        pytest.param("x" * 4000, id="very-long"),
    ],
)
def test_should_fail_because_the_kid_is_not_in_the_key_map(kit: Kit, kid: str) -> None:
    assert reason_of(kit.verifier(kit.es256), mint(kit.es256, kid=kid)) is Reason.TOKEN_UNKNOWN_KEY


@pytest.mark.parametrize("kid", [1, ["ec-1"], {"$ne": None}, True], ids=["int", "list", "object", "bool"])
def test_should_fail_because_the_kid_is_not_a_string(kit: Kit, kid: object) -> None:
    token = sign_raw(kit.es256, b64u_json({"alg": "ES256", "kid": kid}), b64u_json(claims()))
    assert reason_of(kit.verifier(kit.es256), token) is Reason.TOKEN_MALFORMED


# -- P5: jku / x5u / jwk / x5c are never used -----------------------------------------------------
EMBEDDED_KEYS = [
    pytest.param(lambda k: mint(k.attacker, kid=DROP, jwk=k.attacker.jwk()), id="jwk-header-no-kid"),
    pytest.param(lambda k: mint(k.attacker, jwk=k.attacker.jwk()), id="jwk-header-with-trusted-kid"),
    pytest.param(lambda k: mint(k.attacker, jku="http://127.0.0.1:1/jwks.json"), id="jku-header"),
    pytest.param(lambda k: mint(k.attacker, x5u="http://169.254.169.254/cert.pem"), id="x5u-header"),
    pytest.param(
        lambda k: mint(k.attacker, x5c=[b64u(k.attacker.self_signed_cert_der())]),
        id="x5c-header-with-trusted-kid",
    ),
    pytest.param(
        lambda k: mint(k.attacker, kid=DROP, x5c=[b64u(k.attacker.self_signed_cert_der())]),
        id="x5c-header-no-kid",
    ),
]


@pytest.mark.parametrize("make", EMBEDDED_KEYS)
def test_should_fail_because_keys_named_in_the_header_are_ignored(
    kit: Kit, make: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = make(kit)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the verifier touched the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert reason_of(kit.verifier(kit.es256), token) in (Reason.TOKEN_UNKNOWN_KEY, Reason.TOKEN_BAD_SIGNATURE)


def test_should_fail_because_the_signature_does_not_match(kit: Kit) -> None:
    v = kit.verifier(kit.es256)
    good = mint(kit.es256)
    head, body, sig = good.split(".")
    forged_body = b64u_json(claims(sub="admin"))
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    assert reason_of(v, f"{head}.{forged_body}.{sig}") is Reason.TOKEN_BAD_SIGNATURE
    assert reason_of(v, f"{head}.{body}.{flipped}") is Reason.TOKEN_BAD_SIGNATURE
    assert reason_of(v, f"{head}.{body}.{sig[:20]}") is Reason.TOKEN_BAD_SIGNATURE
    assert reason_of(v, f"{head}.{body}.") is Reason.TOKEN_BAD_SIGNATURE
    assert reason_of(v, mint(kit.attacker)) is Reason.TOKEN_BAD_SIGNATURE


# -- P6-P9: claims ---------------------------------------------------------------------------
CLAIM_CASES = [
    pytest.param(claims(exp=DROP), NOW, Reason.TOKEN_MISSING_CLAIM, id="no-exp"),
    pytest.param(claims(exp=None), NOW, Reason.TOKEN_MISSING_CLAIM, id="null-exp"),
    pytest.param(claims(iss=DROP), NOW, Reason.TOKEN_MISSING_CLAIM, id="no-iss"),
    pytest.param(claims(aud=DROP), NOW, Reason.TOKEN_MISSING_CLAIM, id="no-aud"),
    pytest.param(claims(sub=DROP), NOW, Reason.TOKEN_MISSING_CLAIM, id="no-sub"),
    pytest.param(claims(sub=""), NOW, Reason.TOKEN_MISSING_CLAIM, id="empty-sub"),
    pytest.param(claims(exp=NOW - 61), NOW, Reason.TOKEN_EXPIRED, id="expired-one-second-beyond-leeway"),
    pytest.param(claims(exp=NOW - 60), NOW, Reason.TOKEN_EXPIRED, id="expired-exactly-at-leeway"),
    pytest.param(claims(exp=NOW - 3600), NOW, Reason.TOKEN_EXPIRED, id="expired-an-hour-ago"),
    pytest.param(claims(nbf=NOW + 61), NOW, Reason.TOKEN_NOT_YET_VALID, id="nbf-one-second-beyond-leeway"),
    pytest.param(claims(iat=NOW + 61), NOW, Reason.TOKEN_NOT_YET_VALID, id="iat-one-second-beyond-leeway"),
    pytest.param(claims(exp="tomorrow"), NOW, Reason.TOKEN_MALFORMED, id="exp-is-a-string"),
    pytest.param(claims(exp=True), NOW, Reason.TOKEN_MALFORMED, id="exp-is-a-bool"),
    pytest.param(claims(nbf=[1]), NOW, Reason.TOKEN_MALFORMED, id="nbf-is-a-list"),
    pytest.param(claims(exp=10**400), NOW, Reason.TOKEN_MALFORMED, id="exp-overflows-a-float"),
    pytest.param(claims(aud="https://other.example.com"), NOW, Reason.TOKEN_BAD_AUDIENCE, id="wrong-aud"),
    pytest.param(
        claims(aud=["https://a.example", "https://b.example"]),
        NOW,
        Reason.TOKEN_BAD_AUDIENCE,
        id="aud-list-without-ours",
    ),
    pytest.param(claims(aud=[]), NOW, Reason.TOKEN_BAD_AUDIENCE, id="empty-aud-list"),
    pytest.param(claims(aud=123), NOW, Reason.TOKEN_BAD_AUDIENCE, id="aud-is-a-number"),
    pytest.param(claims(aud=[[AUD]]), NOW, Reason.TOKEN_BAD_AUDIENCE, id="aud-nested-list"),
    pytest.param(claims(aud=AUD.upper()), NOW, Reason.TOKEN_BAD_AUDIENCE, id="aud-other-case"),
    pytest.param(claims(iss="https://evil.example.com"), NOW, Reason.TOKEN_BAD_ISSUER, id="wrong-iss"),
    pytest.param(claims(iss=ISS + "/"), NOW, Reason.TOKEN_BAD_ISSUER, id="iss-with-trailing-slash"),
    pytest.param(claims(iss=[ISS]), NOW, Reason.TOKEN_BAD_ISSUER, id="iss-is-a-list"),
]


@pytest.mark.parametrize(("payload", "now", "reason"), CLAIM_CASES)
def test_should_fail_because_a_claim_is_wrong(
    kit: Kit, payload: dict[str, Any], now: float, reason: Reason
) -> None:
    assert reason_of(kit.verifier(kit.es256), mint(kit.es256, payload), now) is reason


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(claims(exp=NOW - 59), id="expired-within-leeway"),
        pytest.param(claims(nbf=NOW + 60), id="nbf-exactly-at-leeway"),
        pytest.param(claims(iat=NOW + 60), id="iat-exactly-at-leeway"),
        pytest.param(claims(aud=["https://other.example", AUD]), id="aud-list-containing-ours"),
        pytest.param(claims(aud=["https://other.example", 5, AUD]), id="aud-list-with-junk-and-ours"),
        pytest.param(claims(iat=DROP), id="no-iat"),
    ],
)
def test_should_pass_at_the_edges(kit: Kit, payload: dict[str, Any]) -> None:
    vt = kit.verifier(kit.es256).verify(mint(kit.es256, payload), NOW)
    assert vt.sub == "user-42"


def test_leeway_comes_from_the_issuer_config(kit: Kit) -> None:
    strict = kit.verifier(kit.es256, leeway_seconds=0)
    strict.verify(mint(kit.es256, claims(exp=NOW + 1)), NOW)
    # RFC 7519 §4.1.4: refused on or after exp
    assert reason_of(strict, mint(kit.es256, claims(exp=NOW))) is Reason.TOKEN_EXPIRED
    assert reason_of(strict, mint(kit.es256, claims(exp=NOW - 1))) is Reason.TOKEN_EXPIRED
    assert reason_of(strict, mint(kit.es256, claims(nbf=NOW + 1))) is Reason.TOKEN_NOT_YET_VALID


def test_should_fail_because_the_token_lives_longer_than_allowed(kit: Kit) -> None:
    v = kit.verifier(kit.es256, max_token_lifetime_seconds=3600)
    v.verify(mint(kit.es256, claims(iat=NOW, exp=NOW + 3600)), NOW)
    assert reason_of(v, mint(kit.es256, claims(iat=NOW, exp=NOW + 3601))) is Reason.TOKEN_LIFETIME_TOO_LONG
    assert reason_of(v, mint(kit.es256, claims(iat=DROP, exp=NOW + 7200))) is Reason.TOKEN_LIFETIME_TOO_LONG


# -- P10: explicit typing --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typ", "ok"),
    [
        pytest.param("at+jwt", True, id="at+jwt"),
        pytest.param("AT+JWT", True, id="upper-case-at+jwt"),
        pytest.param("application/at+jwt", True, id="application/at+jwt"),
        pytest.param("Application/AT+JWT", True, id="mixed-case-application/at+jwt"),
        pytest.param("JWT", False, id="plain-jwt-typ"),
        pytest.param("id_token", False, id="id-token-typ"),
        pytest.param("JOSE", False, id="jwt-svid-typ"),
        pytest.param("at+jwt ", False, id="trailing-space"),
        pytest.param(None, False, id="absent-typ"),
        pytest.param(["at+jwt"], False, id="typ-is-a-list"),
    ],
)
def test_typ_must_match_when_the_issuer_requires_one(kit: Kit, typ: object, ok: bool) -> None:
    v = kit.verifier(kit.es256, typ="at+jwt")
    token = (
        mint(kit.es256, typ=typ)
        if isinstance(typ, str | type(None))
        else sign_raw(kit.es256, b64u_json({"alg": "ES256", "kid": "ec-1", "typ": typ}), b64u_json(claims()))
    )
    if ok:
        assert v.verify(token, NOW).sub == "user-42"
    else:
        assert reason_of(v, token) is Reason.TOKEN_BAD_TYPE


def test_typ_is_not_checked_when_the_issuer_requires_none(kit: Kit) -> None:
    assert kit.verifier(kit.es256).verify(mint(kit.es256, typ="JWT"), NOW).sub == "user-42"


# -- P11, P13: format and encoding -------------------------------------------------------------
def _json_serialized(kit: Kit, flattened: bool) -> str:
    head, body, sig = mint(kit.es256).split(".")
    if flattened:
        return json.dumps({"payload": body, "protected": head, "signature": sig})
    return json.dumps({"payload": body, "signatures": [{"protected": head, "signature": sig}]})


def _dup_header(kit: Kit) -> str:
    raw = b'{"alg":"ES256","kid":"ec-1","alg":"none"}'
    return sign_raw(kit.es256, b64u(raw), b64u_json(claims()))


def _dup_payload(kit: Kit) -> str:
    body = json.dumps(claims())[:-1] + ', "sub": "admin"}'
    return sign_raw(kit.es256, b64u_json({"alg": "ES256", "kid": "ec-1"}), b64u(body.encode()))


def _encoded_header(kit: Kit, codec: str) -> str:
    head = json.dumps({"alg": "ES256", "kid": "ec-1"}).encode(codec)
    return sign_raw(kit.es256, b64u(head), b64u_json(claims()))


def _encoded_payload(kit: Kit, codec: str) -> str:
    return sign_raw(
        kit.es256, b64u_json({"alg": "ES256", "kid": "ec-1"}), b64u(json.dumps(claims()).encode(codec))
    )


def _raw_payload(kit: Kit, body: bytes) -> str:
    return sign_raw(kit.es256, b64u_json({"alg": "ES256", "kid": "ec-1"}), b64u(body))


def _oversized(kit: Kit) -> str:
    return mint(kit.es256, claims(pad="x" * MAX_TOKEN_CHARS))


def _with_header(kit: Kit, **extra: Any) -> str:
    return sign_raw(kit.es256, b64u_json({"alg": "ES256", "kid": "ec-1", **extra}), b64u_json(claims()))


FORMAT_CASES = [
    pytest.param(lambda k: _json_serialized(k, flattened=False), id="json-serialization-general"),
    pytest.param(lambda k: _json_serialized(k, flattened=True), id="json-serialization-flattened"),
    pytest.param(lambda k: mint(k.es256) + ".", id="extra-trailing-dot"),
    pytest.param(lambda k: mint(k.es256) + ".e30", id="four-parts"),
    pytest.param(lambda k: "." + mint(k.es256), id="leading-dot"),
    pytest.param(lambda k: mint(k.es256).replace(".", "..", 1), id="double-dot"),
    pytest.param(lambda k: ".".join(mint(k.es256).split(".")[:2]), id="two-parts"),
    pytest.param(lambda k: mint(k.es256).split(".")[0], id="one-part"),
    pytest.param(lambda k: "a.b.c.d.e", id="five-parts-jwe-shape"),
    pytest.param(lambda k: "", id="empty"),
    pytest.param(lambda k: "..", id="only-dots"),
    pytest.param(
        lambda k: mint(k.es256).replace("-", "+").replace("_", "/") + "+/", id="base64-not-base64url"
    ),
    pytest.param(lambda k: mint(k.es256) + "==", id="base64-padding-on-signature"),
    pytest.param(
        lambda k: b64u_json({"alg": "ES256"}) + "=." + mint(k.es256).split(".", 1)[1], id="padded-header"
    ),
    pytest.param(lambda k: mint(k.es256)[:10] + "!" + mint(k.es256)[11:], id="non-base64url-char"),
    pytest.param(lambda k: mint(k.es256)[:10] + "é" + mint(k.es256)[11:], id="non-ascii-char"),
    pytest.param(lambda k: " " + mint(k.es256), id="leading-space"),
    pytest.param(lambda k: "A" + mint(k.es256), id="header-length-mod-4-is-1"),
    pytest.param(_dup_header, id="duplicate-alg-in-header"),
    pytest.param(_dup_payload, id="duplicate-sub-in-payload"),
    pytest.param(lambda k: _encoded_header(k, "utf-16"), id="utf-16-header-with-bom"),
    pytest.param(lambda k: _encoded_header(k, "utf-16-le"), id="utf-16le-header"),
    pytest.param(lambda k: _encoded_header(k, "utf-32"), id="utf-32-header"),
    pytest.param(lambda k: _encoded_payload(k, "utf-16"), id="utf-16-payload"),
    pytest.param(lambda k: _encoded_header(k, "utf-8-sig"), id="utf-8-bom-header"),
    pytest.param(lambda k: _raw_payload(k, b'{"sub": "\xff"}'), id="invalid-utf-8-payload"),
    pytest.param(lambda k: _raw_payload(k, b'["not", "an", "object"]'), id="payload-is-an-array"),
    pytest.param(lambda k: _raw_payload(k, b'"a string"'), id="payload-is-a-string"),
    pytest.param(lambda k: _raw_payload(k, b"not json"), id="payload-not-json"),
    pytest.param(
        lambda k: _raw_payload(k, json.dumps(claims())[:-1].encode() + b',"n":NaN}'), id="nan-in-payload"
    ),
    pytest.param(lambda k: _raw_payload(k, b"[" * 5000 + b"]" * 5000), id="deeply-nested-payload"),
    pytest.param(_oversized, id="oversized-token"),
    pytest.param(lambda k: sign_raw(k.es256, b64u(b"[1]"), b64u_json(claims())), id="header-is-an-array"),
]


@pytest.mark.parametrize("make", FORMAT_CASES)
def test_should_fail_because_the_token_is_malformed(kit: Kit, make: TokenFactory) -> None:
    assert reason_of(kit.verifier(kit.es256), make(kit)) is Reason.TOKEN_MALFORMED


UNSUPPORTED_HEADER_CASES = [
    pytest.param(lambda k: _with_header(k, crit=["exp"]), id="crit-header"),
    pytest.param(lambda k: _with_header(k, crit=["b64"], b64=False), id="unencoded-payload-b64-false"),
    pytest.param(lambda k: _with_header(k, zip="DEF"), id="zip-header"),
    pytest.param(lambda k: _with_header(k, enc="A256GCM"), id="jwe-enc-header"),
]


@pytest.mark.parametrize("make", UNSUPPORTED_HEADER_CASES)
def test_should_fail_because_a_header_parameter_is_not_supported(kit: Kit, make: TokenFactory) -> None:
    """RFC 7515 §4.1.11 (`crit`), RFC 7516 (`zip`/`enc`: JWE), RFC 7797 (`b64`): none is implemented."""
    assert reason_of(kit.verifier(kit.es256), make(kit)) is Reason.TOKEN_UNSUPPORTED_HEADER


# -- happy paths ---------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"])
def test_should_pass_for_each_asymmetric_algorithm(kit: Kit, alg: str) -> None:
    signer = {
        "ES256": kit.es256,
        "ES384": kit.es384,
        "ES512": kit.es512,
        "RS256": kit.rs256,
        "PS256": kit.ps256,
        "EdDSA": kit.eddsa,
    }[alg]
    v = kit.verifier(signer, typ="at+jwt")
    vt = v.verify(mint(signer, typ="at+jwt"), NOW)
    assert (vt.iss, vt.sub, vt.exp, vt.kid, vt.alg, vt.issuer_name) == (
        ISS,
        "user-42",
        NOW + 300,
        signer.kid,
        alg,
        "idp",
    )
    assert vt.scopes == {"orders:read", "orders:write"}
    assert vt.claims["jti"] == "t-1"


def test_rsa_key_serves_every_rsa_algorithm_the_issuer_allows(kit: Kit) -> None:
    v = kit.verifier(kit.rs256, algorithms=["RS256", "PS256"])
    assert v.verify(mint(kit.rs256), NOW).alg == "RS256"
    assert v.verify(mint(kit.ps256), NOW).alg == "PS256"


@pytest.mark.parametrize(
    ("extra", "scopes"),
    [
        pytest.param({"scope": "a b  c"}, {"a", "b", "c"}, id="scope-string"),
        pytest.param({"scope": DROP, "scp": ["a", "b"]}, {"a", "b"}, id="scp-list"),
        pytest.param({"scope": DROP, "scp": "a b"}, {"a", "b"}, id="scp-string"),
        pytest.param({"scope": DROP, "scp": ["a", 1, None, ""]}, {"a"}, id="scp-list-with-junk"),
        pytest.param({"scope": DROP}, set(), id="no-scope"),
        pytest.param({"scope": 42}, set(), id="scope-not-a-string"),
    ],
)
def test_scopes_come_from_scope_or_scp(kit: Kit, extra: dict[str, Any], scopes: set[str]) -> None:
    assert kit.verifier(kit.es256).verify(mint(kit.es256, claims(**extra)), NOW).scopes == scopes


def test_a_token_without_kid_uses_the_kidless_keys(kit: Kit) -> None:
    v = kit.verifier(kit.es256, keys=[StaticKey(pem=kit.es256.public_pem().decode())])
    assert v.verify(mint(kit.es256, kid=DROP), NOW).kid is None
    assert v.verify(mint(kit.es256, kid="whatever"), NOW).kid == "whatever"
    kidded = kit.verifier(kit.es256)
    assert reason_of(kidded, mint(kit.es256, kid=DROP)) is Reason.TOKEN_UNKNOWN_KEY


def test_no_keys_yet_is_keys_unavailable_not_a_crash(kit: Kit) -> None:
    v = TokenVerifier(kit.issuer(kit.es256), lambda: None)
    with pytest.raises(KeySetError) as ei:
        v.verify(mint(kit.es256), NOW)
    assert ei.value.reason is Reason.KEYS_UNAVAILABLE


def test_error_text_never_contains_the_token(kit: Kit) -> None:
    v = kit.verifier(kit.es256)
    for token in (mint(kit.attacker), mint(kit.es256, claims(exp=NOW - 999)), mint(kit.es256, kid="zz")):
        with pytest.raises(TokenError) as ei:
            v.verify(token, NOW)
        assert token.split(".")[2] not in str(ei.value)
        assert token.split(".")[1] not in str(ei.value)


@settings(deadline=None)  # a loaded CI box must not turn slow into failed
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_parse_raises_only_token_error(raw: str) -> None:
    with contextlib.suppress(TokenError):
        parse_compact(raw)


@settings(deadline=None)  # a loaded CI box must not turn slow into failed
@given(st.dictionaries(st.text(max_size=5), st.none() | st.integers() | st.text(max_size=5), max_size=6))
def test_any_header_json_gives_a_token_error_never_another_exception(header: dict[str, Any]) -> None:
    token = f"{b64u_json(header)}.{b64u_json(claims())}.AAAA"
    verifier = TokenVerifier(
        Issuer(name="x", issuer=ISS, audiences=[AUD], jwks_url=ISS + "/jwks"), lambda: None
    )
    with contextlib.suppress(TokenError, KeySetError):
        verifier.verify(token, NOW)
