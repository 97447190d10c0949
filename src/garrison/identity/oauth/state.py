"""The token service's state behind ``typing.Protocol``s, and the in-memory implementation.

Three stores: used assertion ``jti``s (RFC 7523 §3 replay), revoked access-token ``jti``s
(RFC 7009), and the sealed signing keys. Every entry that can expire carries the time after which
it is useless, so both sets stay bounded. SQL: ``sql_state.py``.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class SealedSigningKey:
    """One signing key at rest: the PKCS#8 DER private key sealed under the KEK (``Kek.seal``)."""

    kid: str
    alg: str
    state: str  # signing_keys.KeyState value
    sealed_key: bytes
    created_at: float
    state_since: float  # when the key entered ``state`` (a rotation's time)

    def __repr__(self) -> str:
        return f"<SealedSigningKey kid={self.kid!r} {self.alg} {self.state}>"


@runtime_checkable
class ReplayStore(Protocol):
    def use_jti(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        """Record ``jti`` for ``client_id`` until ``expires_at``; False if it was already recorded."""
        ...


@runtime_checkable
class RevocationStore(Protocol):
    def revoke(self, jti: str, expires_at: float, now: float) -> None:
        """Remember ``jti`` as revoked until ``expires_at`` (after that no verifier accepts it anyway)."""
        ...

    def is_revoked(self, jti: str, now: float) -> bool: ...

    def revoked_jtis(self, now: float) -> frozenset[str]:
        """Every revoked ``jti`` still worth telling a gateway about."""
        ...


@runtime_checkable
class SigningKeyStore(Protocol):
    def load_signing_keys(self) -> list[SealedSigningKey]: ...

    def save_signing_keys(self, keys: Sequence[SealedSigningKey]) -> None:
        """Replace the stored ring with ``keys`` atomically."""
        ...


class _ExpiringSet:
    """A set of keys, each forgotten once ``now`` passes its expiry. Pruned lazily with a heap."""

    __slots__ = ("_expiry", "_heap")

    def __init__(self) -> None:
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []

    def prune(self, now: float) -> None:
        heap, expiry = self._heap, self._expiry
        while heap and heap[0][0] < now:
            at, key = heapq.heappop(heap)
            if expiry.get(key) == at:
                del expiry[key]

    def add(self, key: tuple[str, str], expires_at: float, now: float) -> bool:
        self.prune(now)
        have = self._expiry.get(key)
        if have is not None:
            if expires_at > have:  # keep the later expiry; the old heap entry is skipped on pop
                self._expiry[key] = expires_at
                heapq.heappush(self._heap, (expires_at, key))
            return False
        self._expiry[key] = expires_at
        heapq.heappush(self._heap, (expires_at, key))
        return True

    def contains(self, key: tuple[str, str], now: float) -> bool:
        at = self._expiry.get(key)
        return at is not None and at >= now

    def live(self, now: float) -> list[tuple[str, str]]:
        self.prune(now)
        return list(self._expiry)

    def __len__(self) -> int:
        return len(self._expiry)


class MemoryOAuthState:
    """All three stores in process memory (tests, single-process ``garrison up``). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jtis = _ExpiringSet()
        self._revoked = _ExpiringSet()
        self._keys: list[SealedSigningKey] = []

    def use_jti(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        with self._lock:
            return self._jtis.add((client_id, jti), expires_at, now)

    def revoke(self, jti: str, expires_at: float, now: float) -> None:
        with self._lock:
            self._revoked.add(("", jti), expires_at, now)

    def is_revoked(self, jti: str, now: float) -> bool:
        with self._lock:
            return self._revoked.contains(("", jti), now)

    def revoked_jtis(self, now: float) -> frozenset[str]:
        with self._lock:
            return frozenset(j for _, j in self._revoked.live(now))

    def load_signing_keys(self) -> list[SealedSigningKey]:
        with self._lock:
            return list(self._keys)

    def save_signing_keys(self, keys: Sequence[SealedSigningKey]) -> None:
        with self._lock:
            self._keys = list(keys)

    def __repr__(self) -> str:
        return (
            f"<MemoryOAuthState jtis={len(self._jtis)} revoked={len(self._revoked)} keys={len(self._keys)}>"
        )


__all__ = ["MemoryOAuthState", "ReplayStore", "RevocationStore", "SealedSigningKey", "SigningKeyStore"]
