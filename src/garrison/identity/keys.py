"""Verification keys: static PEM/JWK keys and JWKS documents -> an immutable ``KeySet``.

No network I/O here (a ``pem_file`` is read once, at config load). Every cryptography/PyJWT error is
translated into ``KeySetError``; a set with no usable key is an error, never an empty set (SPIFFE B1).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import PyJWTError

from garrison.config.models import StaticKey
from garrison.errors import KeySetError

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
# RFC 7518 §3.4 / RFC 8725 §3.1: an EC key is tied to the one algorithm of its curve.
_EC_ALGORITHM = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_MIN_RSA_BITS = 2048  # NIST SP 800-131A; smaller RSA keys are skipped
# RFC 7518 §6.2.2, §6.3.2, §6.4.1: members carrying private (or symmetric) key material. One of them
# in a JWKS means the IdP leaked a secret: the whole document is refused.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class DuplicateKeyError(ValueError):
    """A JSON object repeats a member name (RFC 8725bis: reject; Python's json keeps the last one)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise DuplicateKeyError("duplicate member name in a JSON object")
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


# Built once: json.loads(..., object_pairs_hook=...) would build a new decoder on every call (~2 µs).
# scan_once is the decoder's C scanner, called directly to skip JSONDecoder.decode's Python layer.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
_JSON_WS = " \t\n\r"  # RFC 8259 §2 insignificant whitespace


def strict_json_object(data: bytes | str) -> dict[str, Any]:
    """Parse a UTF-8 JSON object, rejecting duplicate names, NaN/Infinity and other encodings.

    Raises ``ValueError`` (the caller picks its own error). ``json.loads(bytes)`` would silently accept
    UTF-16/32 (RFC 8725 §3.7 "Use UTF-8"), so bytes are decoded as strict UTF-8 first.
    """
    text = (data.decode("utf-8") if isinstance(data, bytes) else data).lstrip(_JSON_WS)
    try:
        obj, end = _SCAN(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if end != len(text) and text[end:].strip(_JSON_WS):
        raise ValueError("data after the JSON value")
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key and the algorithms it may verify (RFC 8725 §3.1: tied to its key type)."""

    kid: str | None
    key: PublicKey
    algorithms: frozenset[str]

    def __repr__(self) -> str:
        return f"<VerificationKey kid={self.kid!r} {type(self.key).__name__} {sorted(self.algorithms)}>"


class KeySet:
    """An immutable, non-empty set of verification keys: a kid -> keys map plus the kid-less keys."""

    __slots__ = ("_by_kid", "_kidless", "count", "fingerprint")

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        by_kid: dict[str, list[VerificationKey]] = {}
        kidless: list[VerificationKey] = []
        digest = hashlib.sha256()
        count = 0
        for k in keys:
            count += 1
            if k.kid is None:
                kidless.append(k)
            else:
                by_kid.setdefault(k.kid, []).append(k)
            digest.update(repr((k.kid, sorted(k.algorithms))).encode())
            digest.update(k.key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
        if count == 0:
            raise KeySetError("key set has no usable key")
        self._by_kid: Mapping[str, tuple[VerificationKey, ...]] = MappingProxyType(
            {kid: tuple(ks) for kid, ks in by_kid.items()}
        )
        self._kidless = tuple(kidless)
        self.count = count
        self.fingerprint = digest.hexdigest()[:16]  # changes iff the keys or their algorithms change

    def candidates(self, kid: str | None) -> tuple[VerificationKey, ...]:
        """Keys a token with this ``kid`` may be checked against (RFC 8725 §3.10: map lookup only)."""
        if kid is not None:
            found = self._by_kid.get(kid)
            if found is not None:
                return found
        return self._kidless

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_kid

    def __len__(self) -> int:
        return self.count

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._by_kid)

    def __repr__(self) -> str:
        return f"<KeySet {self.count} keys kids={sorted(self._by_kid)} {self.fingerprint}>"


def algorithms_for(key: PublicKey, allowed: Iterable[str]) -> frozenset[str]:
    """The algorithms ``key`` may verify, given the issuer's allowlist. Never HS* or none."""
    allowed = frozenset(allowed)
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_ALGORITHM.get(key.curve.name)
        return frozenset({alg}) & allowed if alg else frozenset()
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS & allowed if key.key_size >= _MIN_RSA_BITS else frozenset()
    return frozenset({"EdDSA"}) & allowed  # Ed25519 / Ed448 (RFC 8037 §3.1)


def key_from_pem(pem: bytes, kid: str | None, allowed: Iterable[str]) -> VerificationKey:
    """A public key or certificate in PEM. A private key is refused (it has no place in config)."""
    if b"PRIVATE KEY-----" in pem:
        raise KeySetError("a private key was given where a public key is expected")
    try:
        if b"-----BEGIN CERTIFICATE-----" in pem:
            key: object = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeySetError(f"unreadable PEM key: {exc}") from None
    if not isinstance(key, PublicKey):
        raise KeySetError(f"unsupported key type {type(key).__name__}")
    algs = algorithms_for(key, allowed)
    if not algs:
        raise KeySetError(f"{type(key).__name__} (kid={kid!r}) can verify none of {sorted(allowed)}")
    return VerificationKey(kid, key, algs)


def key_from_jwk(jwk: Mapping[str, Any], allowed: Iterable[str]) -> VerificationKey | None:
    """One JWK -> key, or None when RFC 7517 says to ignore it (other use, no verify op, unknown kty).

    Raises ``KeySetError`` when the JWK carries private key material (the whole set must be refused).
    """
    if _PRIVATE_MEMBERS.intersection(jwk):
        raise KeySetError(f"JWK kid={jwk.get('kid')!r} contains private key material")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        return None
    # RFC 7517 §4.2/§4.3: only signature-verification keys are usable here.
    if jwk.get("use", "sig") != "sig":
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    kty = jwk.get("kty")
    loader = {"RSA": RSAAlgorithm.from_jwk, "EC": ECAlgorithm.from_jwk, "OKP": OKPAlgorithm.from_jwk}.get(
        kty if isinstance(kty, str) else ""
    )
    if loader is None:
        return None  # SPIFFE B1 / RFC 7517 §5: unknown kty -> ignore the element
    try:
        key = loader(dict(jwk))
    except (PyJWTError, ValueError, TypeError, KeyError, UnsupportedAlgorithm):
        return None
    if not isinstance(key, PublicKey):
        return None
    algs = algorithms_for(key, allowed)
    alg = jwk.get("alg")
    if alg is not None:
        # RFC 7517 §4.4: a JWK's alg names the one algorithm the key is for; it narrows, never widens.
        algs = algs & {alg} if isinstance(alg, str) else frozenset()
    if not algs:
        return None
    return VerificationKey(kid, key, algs)


def parse_jwks(document: bytes | str, allowed: Iterable[str]) -> KeySet:
    """RFC 7517 §5 JWK Set -> KeySet. Garbage, private keys or no usable key -> ``KeySetError``."""
    try:
        obj = strict_json_object(document)
    except ValueError as exc:  # includes UnicodeDecodeError and DuplicateKeyError
        raise KeySetError(f"JWKS is not a JSON object: {exc}") from None
    keys = obj.get("keys")
    if not isinstance(keys, list):
        raise KeySetError("JWKS has no 'keys' array")
    allowed = frozenset(allowed)
    usable = [k for jwk in keys if isinstance(jwk, dict) and (k := key_from_jwk(jwk, allowed)) is not None]
    if not usable:
        raise KeySetError(f"JWKS has no usable key among {len(keys)} (algorithms {sorted(allowed)})")
    return KeySet(usable)


def load_static_keys(keys: Sequence[StaticKey], allowed: Iterable[str]) -> KeySet:
    """An issuer's ``keys:`` from garrison.yaml. Every key must be usable: a bad one is a config error."""
    allowed = frozenset(allowed)
    out: list[VerificationKey] = []
    for i, sk in enumerate(keys):
        if sk.jwk is not None:
            jwk = dict(sk.jwk)
            if sk.kid is not None:
                jwk["kid"] = sk.kid
            k = key_from_jwk(jwk, allowed)
            if k is None:
                raise KeySetError(f"keys[{i}]: JWK is not a usable signature key for {sorted(allowed)}")
            out.append(k)
            continue
        if sk.pem_file is not None:
            try:
                with open(sk.pem_file, "rb") as f:
                    pem = f.read()
            except OSError as exc:
                raise KeySetError(f"keys[{i}]: cannot read {sk.pem_file}: {exc.strerror}") from None
        else:
            pem = (sk.pem or "").encode()
        try:
            out.append(key_from_pem(pem, sk.kid, allowed))
        except KeySetError as exc:
            raise KeySetError(f"keys[{i}]: {exc}") from None
    return KeySet(out)


__all__ = [
    "RSA_ALGORITHMS",
    "DuplicateKeyError",
    "KeySet",
    "PublicKey",
    "VerificationKey",
    "algorithms_for",
    "key_from_jwk",
    "key_from_pem",
    "load_static_keys",
    "parse_jwks",
    "strict_json_object",
]
