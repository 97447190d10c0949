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
    renewed_by: str | None = None  # the serial of the SVID that renewed this one (one renewal each)
    revoked_via: str | None = None  # "serial" | "spiffe_id"; None if unrevoked or revoked before v3


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
    # Renewal (``Store.issue(renewing=...)``): the presented SVID's row, checked in the same transaction.
    PRESENTED_UNKNOWN = "presented_unknown"
    PRESENTED_REVOKED = "presented_revoked"
    PRESENTED_RENEWED = "presented_renewed"


@dataclass(frozen=True, slots=True)
class IssueState:
    """What the signing step of one issuance sees, all read inside the issuance transaction.

    ``id_revoked_at``: the latest revocation of the CSR's SPIFFE ID (``revoke_spiffe_id``), if any.
    ``presented``: on renewal, the presented SVID's row (locked ``FOR UPDATE`` on PostgreSQL).
    """

    ca: CaKeyRecord | None
    bundle: BundleRecord | None
    id_revoked_at: float | None = None
    presented: SvidRecord | None = None


class SealedKind(StrEnum):
    """Where a KEK-sealed blob lives: each kind has its own seal context (keyring, signing_keys)."""

    KEK_CHECK = "kek_check"  # meta row kek_check (stored base64)
    CA_KEY = "ca_key"  # ca_keys.sealed_key
    SIGNING_KEY = "signing_key"  # oauth_signing_keys.sealed_key


@dataclass(frozen=True, slots=True)
class SealedBlob:
    """One blob sealed under the KEK, as ``Store.reseal`` hands it over. ``repr`` omits the blob."""

    kind: SealedKind
    key: str  # ca_keys.id, oauth_signing_keys.kid, or the meta key
    purpose: str | None  # ca_keys.purpose; None for the other kinds
    blob: bytes

    def __repr__(self) -> str:
        return f"<SealedBlob {self.kind.value} {self.key}>"


__all__ = [
    "BundleRecord",
    "CaKeyPurpose",
    "CaKeyRecord",
    "CaKeyState",
    "IssueState",
    "JoinTokenRecord",
    "RedeemOutcome",
    "SealedBlob",
    "SealedKind",
    "SvidRecord",
]
