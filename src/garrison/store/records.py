"""Typed rows the store reads and writes: frozen values, no behaviour, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CaKeyState(StrEnum):
    PENDING = "pending"  # CSR sent to an external root, certificate not installed yet
    NEXT = "next"  # published in the bundle, not signing yet
    CURRENT = "current"  # signs SVIDs
    RETIRED = "retired"  # no longer signs; stays in the bundle until its SVIDs have expired


class CaKeyPurpose(StrEnum):
    ROOT = "root"
    INTERMEDIATE = "intermediate"


@dataclass(frozen=True, slots=True)
class CaKeyRecord:
    id: str
    purpose: CaKeyPurpose
    state: CaKeyState
    created_at: float
    parent_id: str | None = None
    sealed_key: bytes | None = None
    cert_pem: str | None = None
    csr_pem: str | None = None
    not_before: float | None = None
    not_after: float | None = None


@dataclass(frozen=True, slots=True)
class SvidRecord:
    serial: str  # lower-case hex
    spiffe_id: str
    ca_key_id: str
    not_before: float
    not_after: float
    issued_at: float
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class JoinTokenRecord:
    token_hash: str
    spiffe_id: str
    created_at: float
    expires_at: float
    used_at: float | None = None
    used_by_serial: str | None = None


@dataclass(frozen=True, slots=True)
class BundleRecord:
    sequence: int
    published_at: float
    document: str
    ca_key_ids: tuple[str, ...]


class RedeemOutcome(StrEnum):
    """Result of an atomic join-token redemption (the CA maps it to an error)."""

    REDEEMED = "redeemed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    ALREADY_USED = "already_used"
    WRONG_SPIFFE_ID = "wrong_spiffe_id"


__all__ = [
    "BundleRecord",
    "CaKeyPurpose",
    "CaKeyRecord",
    "CaKeyState",
    "JoinTokenRecord",
    "RedeemOutcome",
    "SvidRecord",
]
