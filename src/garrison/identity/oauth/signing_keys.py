"""The token service's signing keys: a ring of next / current / previous keys (ES256 by default).

Overlapping rotation: the JWKS publishes all three, so a verifier that fetched it before a rotation
already knows the key that signs after it (``next``), and tokens signed before it still verify
(``previous``). Keys are sealed with the KEK whenever they are persisted. Crypto is ``cryptography``
and PyJWT's; nothing here logs or reprs key material.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from garrison.errors import KeySetError
from garrison.identity.ca.sealing import Kek
from garrison.identity.keys import KeySet, VerificationKey
from garrison.identity.oauth.state import SealedSigningKey, SigningKeyStore

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
DEFAULT_ALGORITHM: Final = "ES256"
# RFC 7518 §3.4: each EC algorithm has its curve; RFC 9068 §4 names RS256 as mandatory to implement.
_CURVES: Final[dict[str, ec.EllipticCurve]] = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1()}
SUPPORTED_ALGORITHMS: Final = frozenset({*_CURVES, "RS256"})


class KeyState(StrEnum):
    NEXT = "next"  # published, not yet signing
    CURRENT = "current"  # signs every new token
    PREVIOUS = "previous"  # published until the tokens it signed have expired


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _public_jwk(key: PrivateKey) -> dict[str, Any]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return dict(ECAlgorithm.to_jwk(key.public_key(), as_dict=True))
    return dict(RSAAlgorithm.to_jwk(key.public_key(), as_dict=True))


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, no whitespace; base64url."""
    required = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canon = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canon.encode()).digest())


def _generate(alg: str) -> PrivateKey:
    if alg in _CURVES:
        return ec.generate_private_key(_CURVES[alg])
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unsupported signing algorithm {alg!r}; use one of {sorted(SUPPORTED_ALGORITHMS)}")


def seal_context(kid: str) -> str:
    return f"garrison/oauth_signing_keys/{kid}"  # binds a sealed blob to its row


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key of the ring. ``repr`` shows the kid only."""

    kid: str
    alg: str
    state: KeyState
    private_key: PrivateKey
    public_jwk: Mapping[str, Any]  # with kid, use, alg
    created_at: float
    state_since: float

    def with_state(self, state: KeyState, now: float) -> SigningKey:
        return SigningKey(self.kid, self.alg, state, self.private_key, self.public_jwk, self.created_at, now)

    def __repr__(self) -> str:
        return f"<SigningKey kid={self.kid!r} {self.alg} {self.state.value}>"

    @classmethod
    def generate(cls, alg: str, state: KeyState, now: float) -> SigningKey:
        key = _generate(alg)
        jwk = _public_jwk(key)
        kid = jwk_thumbprint(jwk)
        jwk.update(kid=kid, use="sig", alg=alg)
        return cls(kid, alg, state, key, jwk, now, now)

    def seal(self, kek: Kek) -> SealedSigningKey:
        der = self.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        sealed = kek.seal(der, context=seal_context(self.kid))
        return SealedSigningKey(
            self.kid, self.alg, self.state.value, sealed, self.created_at, self.state_since
        )

    @classmethod
    def unseal(cls, rec: SealedSigningKey, kek: Kek) -> SigningKey:
        """Open a stored key; a wrong KEK or a tampered/moved blob raises ``SealError``."""
        der = kek.unseal(rec.sealed_key, context=seal_context(rec.kid))
        key = serialization.load_der_private_key(der, password=None)
        if not isinstance(key, PrivateKey):
            raise KeySetError(f"stored signing key {rec.kid} is not an EC or RSA key")
        jwk = _public_jwk(key)
        if jwk_thumbprint(jwk) != rec.kid:
            raise KeySetError(f"stored signing key {rec.kid} does not match its kid")
        jwk.update(kid=rec.kid, use="sig", alg=rec.alg)
        return cls(rec.kid, rec.alg, KeyState(rec.state), key, jwk, rec.created_at, rec.state_since)


class _Snapshot:
    """What readers need, swapped as one reference on rotation (no lock on the signing path)."""

    __slots__ = ("current", "jwks", "keys", "keyset")

    def __init__(self, keys: tuple[SigningKey, ...]) -> None:
        states = [k.state for k in keys]
        if states.count(KeyState.CURRENT) != 1 or states.count(KeyState.NEXT) != 1:
            raise KeySetError("a signing key ring needs exactly one current and one next key")
        if states.count(KeyState.PREVIOUS) > 1:
            raise KeySetError("a signing key ring holds at most one previous key")
        order = {KeyState.NEXT: 0, KeyState.CURRENT: 1, KeyState.PREVIOUS: 2}
        self.keys = tuple(sorted(keys, key=lambda k: order[k.state]))
        self.current = next(k for k in keys if k.state is KeyState.CURRENT)
        # RFC 7517 §5: the published set. Private members never appear (public_jwk has none).
        self.jwks: dict[str, Any] = {"keys": [dict(k.public_jwk) for k in self.keys]}
        self.keyset = KeySet(
            VerificationKey(k.kid, k.private_key.public_key(), frozenset({k.alg})) for k in self.keys
        )


class SigningKeyRing:
    """ES256 (default) signing keys with overlapping rotation; persisted sealed when given a store.

    ``rotate(now)`` drops ``previous``, demotes ``current``, promotes ``next`` and creates a new
    ``next``. A token signed by the old current key keeps verifying for one more rotation, so
    rotations must be at least ``min_rotation_interval`` apart (longest token TTL + verifier leeway).
    """

    def __init__(
        self,
        keys: tuple[SigningKey, ...],
        *,
        store: SigningKeyStore | None = None,
        kek: Kek | None = None,
        min_rotation_interval: float = 0.0,
    ) -> None:
        if (store is None) != (kek is None):
            raise ValueError("a persisted ring needs both a store and a KEK")
        self._snap = _Snapshot(keys)
        self._store = store
        self._kek = kek
        self._lock = threading.Lock()
        self.min_rotation_interval = min_rotation_interval

    @classmethod
    def generate(
        cls, now: float, *, alg: str = DEFAULT_ALGORITHM, min_rotation_interval: float = 0.0
    ) -> SigningKeyRing:
        """A fresh in-memory ring: one current and one next key."""
        keys = (SigningKey.generate(alg, KeyState.CURRENT, now), SigningKey.generate(alg, KeyState.NEXT, now))
        return cls(keys, min_rotation_interval=min_rotation_interval)

    @classmethod
    def open(
        cls,
        store: SigningKeyStore,
        kek: Kek,
        now: float,
        *,
        alg: str = DEFAULT_ALGORITHM,
        min_rotation_interval: float = 0.0,
    ) -> SigningKeyRing:
        """Load the sealed ring from ``store``, or create and persist one if the store has none."""
        records = store.load_signing_keys()
        if records:
            keys = tuple(SigningKey.unseal(r, kek) for r in records)
        else:
            keys = (
                SigningKey.generate(alg, KeyState.CURRENT, now),
                SigningKey.generate(alg, KeyState.NEXT, now),
            )
            store.save_signing_keys([k.seal(kek) for k in keys])
        return cls(keys, store=store, kek=kek, min_rotation_interval=min_rotation_interval)

    # -- readers (lock-free: one attribute read) ----------------------------------------------------
    @property
    def current(self) -> SigningKey:
        return self._snap.current

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        return self._snap.keys

    def jwks(self) -> dict[str, Any]:
        """RFC 7517 §5 JWK Set: next + current + previous public keys (a fresh copy)."""
        return json.loads(json.dumps(self._snap.jwks))  # type: ignore[no-any-return]

    def keyset(self) -> KeySet:
        """The same keys as a ``KeySet`` for ``identity.tokens.TokenVerifier``."""
        return self._snap.keyset

    def sign(self, claims: Mapping[str, Any], *, typ: str) -> str:
        """A compact JWS of ``claims`` by the current key, header ``{alg, typ, kid}``."""
        key = self._snap.current
        return jwt.encode(
            dict(claims), key.private_key, algorithm=key.alg, headers={"typ": typ, "kid": key.kid}
        )

    # -- rotation --------------------------------------------------------------------------------
    def rotate(self, now: float) -> SigningKey:
        """Promote next -> current -> previous, drop the old previous; returns the new current key."""
        with self._lock:
            snap = self._snap
            since = now - snap.current.state_since
            if since < self.min_rotation_interval:
                raise KeySetError(
                    f"refusing to rotate: the current key has signed for {since:.0f}s, less than "
                    f"{self.min_rotation_interval:.0f}s; tokens it signed would stop verifying too soon"
                )
            nxt = next(k for k in snap.keys if k.state is KeyState.NEXT)
            keys = (
                snap.current.with_state(KeyState.PREVIOUS, now),
                nxt.with_state(KeyState.CURRENT, now),
                SigningKey.generate(nxt.alg, KeyState.NEXT, now),
            )
            new = _Snapshot(keys)
            if self._store is not None and self._kek is not None:
                # Persist before use: a restart must never lose a key that signed a live token.
                self._store.save_signing_keys([k.seal(self._kek) for k in new.keys])
            self._snap = new
            return new.current

    def __repr__(self) -> str:
        kids = " ".join(f"{k.state.value}={k.kid[:8]}" for k in self._snap.keys)
        return f"<SigningKeyRing {self._snap.current.alg} {kids}>"


__all__ = [
    "DEFAULT_ALGORITHM",
    "SUPPORTED_ALGORITHMS",
    "KeyState",
    "SigningKey",
    "SigningKeyRing",
    "jwk_thumbprint",
    "seal_context",
]
