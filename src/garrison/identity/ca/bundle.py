"""SPIFFE trust bundles (SPIFFE Trust Domain and Bundle §4): render and parse the JWKS form.

No I/O. Each X.509 authority is a JWK with ``use: "x509-svid"``, exactly one certificate in
``x5c`` and no ``kid`` (X509-SVID §6 / checklist X9); ``spiffe_sequence`` and
``spiffe_refresh_hint`` sit at the top level (checklist B2).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from garrison.errors import IdentityError

DEFAULT_REFRESH_HINT = 5  # seconds: ARCHITECTURE §9 bundle_refresh default
_CURVES = {"secp256r1": ("P-256", 32), "secp384r1": ("P-384", 48), "secp521r1": ("P-521", 66)}


def _b64url(n: int, size: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(size, "big")).rstrip(b"=").decode()


def authority_jwk(cert: x509.Certificate) -> dict[str, Any]:
    """The JWK of one X.509 authority; the public key fields are the certificate's."""
    pk = cert.public_key()
    jwk: dict[str, Any]
    if isinstance(pk, ec.EllipticCurvePublicKey) and pk.curve.name in _CURVES:
        crv, size = _CURVES[pk.curve.name]
        nums = pk.public_numbers()
        jwk = {"kty": "EC", "crv": crv, "x": _b64url(nums.x, size), "y": _b64url(nums.y, size)}
    elif isinstance(pk, rsa.RSAPublicKey):
        nums_r = pk.public_numbers()
        jwk = {
            "kty": "RSA",
            "n": _b64url(nums_r.n, (nums_r.n.bit_length() + 7) // 8),
            "e": _b64url(nums_r.e, (nums_r.e.bit_length() + 7) // 8),
        }
    else:
        raise ValueError(f"unsupported CA key type {type(pk).__name__}")
    jwk["use"] = "x509-svid"  # X509-SVID §6: MUST be x509-svid; kid MUST NOT be set
    jwk["x5c"] = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    return jwk


def render_bundle(
    authorities: Sequence[x509.Certificate], sequence: int, refresh_hint: int = DEFAULT_REFRESH_HINT
) -> str:
    """The bundle document; authorities in the given order, one JWK each."""
    doc = {
        "keys": [authority_jwk(c) for c in authorities],
        "spiffe_sequence": sequence,
        "spiffe_refresh_hint": refresh_hint,
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class TrustBundle:
    authorities: tuple[x509.Certificate, ...]
    sequence: int | None
    refresh_hint: int | None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for k, v in pairs:
        if k in seen:
            raise IdentityError(f"trust bundle has a duplicate key {k!r}")  # checklist B3
        seen[k] = v
    return seen


def parse_bundle(document: str | bytes) -> TrustBundle:
    """Parse a bundle; JWKs of another ``use`` or without ``x5c`` are ignored (SPIFFE bundle §4.2)."""
    try:
        doc = json.loads(document, object_pairs_hook=_no_duplicates)
    except ValueError as e:
        raise IdentityError(f"trust bundle is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise IdentityError("trust bundle has no 'keys' array")  # B1: keys MUST be present
    out: list[x509.Certificate] = []
    for jwk in doc["keys"]:
        if not isinstance(jwk, dict) or jwk.get("use") != "x509-svid":
            continue
        x5c = jwk.get("x5c")
        if not isinstance(x5c, list) or not x5c or not isinstance(x5c[0], str):
            continue  # X9: an x509-svid entry without x5c MUST be ignored
        try:
            out.append(x509.load_der_x509_certificate(base64.b64decode(x5c[0], validate=True)))
        except ValueError:
            raise IdentityError("trust bundle has an unparsable x5c certificate") from None
    seq, hint = doc.get("spiffe_sequence"), doc.get("spiffe_refresh_hint")
    return TrustBundle(
        tuple(out),
        seq if isinstance(seq, int) else None,
        hint if isinstance(hint, int) else None,
    )


__all__ = ["DEFAULT_REFRESH_HINT", "TrustBundle", "authority_jwk", "parse_bundle", "render_bundle"]
