"""Registered OAuth clients (ARCHITECTURE §3: one identity — ``client_id`` is the SPIFFE ID).

A registration is a value checked once, when it is made; the registry is a ``Protocol`` with an
in-memory implementation. No I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol, runtime_checkable

from garrison.config.models import StaticKey
from garrison.identity.ca.spiffe_id import SpiffeId
from garrison.identity.keys import KeySet, VerificationKey, load_static_keys
from garrison.identity.oauth.form import SCOPE_TOKEN

GRANT_CLIENT_CREDENTIALS: Final = "client_credentials"
GRANT_TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 RFC 8693 §2.1
# Assertion algorithms a client key may use: asymmetric only (RFC 8725 §3.1, no HS*, no none);
# each key is further tied to its own type's algorithm by ``keys.algorithms_for``.
ASSERTION_ALGORITHMS: Final = frozenset({"ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"})
MAX_CLIENT_KEYS: Final = 4


class AuthMethod(StrEnum):
    """RFC 8414 §2 ``token_endpoint_auth_methods_supported`` values we implement."""

    PRIVATE_KEY_JWT = "private_key_jwt"  # RFC 7523 §2.2 / OIDC Core §9
    TLS_CLIENT_AUTH = "tls_client_auth"  # RFC 8705 §2.1


@dataclass(frozen=True, slots=True)
class ClientRegistration:
    """A client: its SPIFFE ID, how it authenticates, and what it may ask for.

    ``audiences`` are the target services its tokens may name; ``scopes`` the scopes it may get;
    ``grant_types`` the grants it may use (token exchange must be granted explicitly).
    """

    client_id: SpiffeId
    auth_method: AuthMethod
    scopes: frozenset[str]
    audiences: frozenset[str]
    jwks: tuple[Mapping[str, Any], ...] = ()
    grant_types: frozenset[str] = frozenset({GRANT_CLIENT_CREDENTIALS})
    default_audience: str | None = None
    keyset: KeySet | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.client_id, SpiffeId) or self.client_id.is_root:
            raise ValueError("client_id must be a workload SpiffeId")
        if any(not isinstance(s, str) or not SCOPE_TOKEN.fullmatch(s) for s in self.scopes):
            raise ValueError(f"{self.client_id}: a scope is not an RFC 6749 §3.3 scope-token")
        if not self.audiences or not all(isinstance(a, str) and a for a in self.audiences):
            raise ValueError(f"{self.client_id}: at least one allowed audience is required")
        if self.default_audience is not None and self.default_audience not in self.audiences:
            raise ValueError(f"{self.client_id}: default_audience is not an allowed audience")
        unknown = self.grant_types - {GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE}
        if unknown:
            raise ValueError(f"{self.client_id}: unknown grant types {sorted(unknown)}")
        keyset: KeySet | None = None
        if self.auth_method is AuthMethod.PRIVATE_KEY_JWT:
            if not 1 <= len(self.jwks) <= MAX_CLIENT_KEYS:
                raise ValueError(
                    f"{self.client_id}: private_key_jwt needs 1 to {MAX_CLIENT_KEYS} public JWKs"
                )
            # KeySetError for private material, symmetric keys or unusable keys (keys.key_from_jwk).
            loaded = load_static_keys([StaticKey(jwk=dict(j)) for j in self.jwks], ASSERTION_ALGORITHMS)
            # Every registered key is a candidate whatever the assertion's `kid` (RFC 7523 does not
            # require one); the algorithm stays tied to each key.
            keyset = _kidless(loaded, self.jwks)
        elif self.jwks:
            raise ValueError(f"{self.client_id}: JWKs are only used with private_key_jwt")
        object.__setattr__(self, "keyset", keyset)

    @property
    def may_exchange(self) -> bool:
        return GRANT_TOKEN_EXCHANGE in self.grant_types

    def __repr__(self) -> str:
        return f"<ClientRegistration {self.client_id} {self.auth_method.value} aud={sorted(self.audiences)}>"


def _kidless(loaded: KeySet, jwks: Iterable[Mapping[str, Any]]) -> KeySet:
    keys: list[VerificationKey] = []
    for j in jwks:
        kid = j.get("kid")
        for k in loaded.candidates(kid if isinstance(kid, str) else None):
            if k not in keys:
                keys.append(k)
    return KeySet(VerificationKey(None, k.key, k.algorithms) for k in keys)


@runtime_checkable
class ClientRegistry(Protocol):
    def get(self, client_id: str) -> ClientRegistration | None: ...


class MemoryClientRegistry:
    """Registrations in a dict (tests, embedded mode). Thread-safe for writers; reads are one lookup."""

    def __init__(self, registrations: Iterable[ClientRegistration] = ()) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, ClientRegistration] = {}
        for r in registrations:
            self.register(r)

    def register(self, reg: ClientRegistration) -> None:
        with self._lock:
            self._clients = {**self._clients, str(reg.client_id): reg}

    def remove(self, client_id: str) -> None:
        with self._lock:
            self._clients = {k: v for k, v in self._clients.items() if k != client_id}

    def get(self, client_id: str) -> ClientRegistration | None:
        return self._clients.get(client_id)

    def __repr__(self) -> str:
        return f"<MemoryClientRegistry {len(self._clients)} clients>"


__all__ = [
    "ASSERTION_ALGORITHMS",
    "GRANT_CLIENT_CREDENTIALS",
    "GRANT_TOKEN_EXCHANGE",
    "AuthMethod",
    "ClientRegistration",
    "ClientRegistry",
    "MemoryClientRegistry",
]
