"""The one exception tree of garrison.

    GarrisonError                 every error garrison raises on purpose; carries a Reason
    ├── ConfigError               garrison.yaml is invalid (names the key path / line)
    ├── HttpError                 a request violates HTTP hygiene (framing, limits, path)
    ├── IdentityError
    │   ├── TokenError            a bearer token failed verification
    │   ├── KeySetError           signing keys could not be obtained or parsed
    │   ├── SvidError             a CSR or a presented SVID was refused (never issued / not renewed)
    │   └── JoinTokenError        a join token is unknown, expired, already used or bound to another ID
    ├── SealError                 sealed key material could not be opened (wrong KEK, tampered/swapped blob)
    ├── CaError                   the CA is not in a state to sign (no current intermediate, bad rotation)
    ├── StoreError                the control-plane store failed (unreachable, locked, schema too new)
    │   └── AuditError            the audit log cannot be opened or written (telemetry/audit.py)
    ├── PolicyError               a policy cannot be compiled
    └── UpstreamError             the upstream could not be reached or answered badly

Misuse of the API (TypeError, ValueError from bad arguments) stays outside the tree.
Third-party exceptions are translated at the one module that calls the library.
"""

from __future__ import annotations

from garrison.reasons import Reason


class GarrisonError(Exception):
    """Root of every deliberate garrison error. ``reason`` is safe to show a client; ``str()`` is not."""

    default_reason: Reason = Reason.STAGE_ERROR

    def __init__(self, message: str = "", reason: Reason | None = None) -> None:
        super().__init__(message or (reason or self.default_reason).message)
        self.reason: Reason = reason or self.default_reason


class ConfigError(GarrisonError):
    """garrison.yaml (or a file it names) is invalid. ``str()`` names the key path and, where known, line."""


class HttpError(GarrisonError):
    default_reason = Reason.BAD_REQUEST


class IdentityError(GarrisonError):
    default_reason = Reason.AUTHN_REQUIRED


class TokenError(IdentityError):
    default_reason = Reason.TOKEN_MALFORMED


class KeySetError(IdentityError):
    default_reason = Reason.KEYS_UNAVAILABLE


class SvidError(IdentityError):
    """A CSR or a presented SVID is refused. ``str()`` says why (for the operator, not the client)."""

    default_reason = Reason.SVID_REFUSED


class JoinTokenError(IdentityError):
    """A join token cannot be redeemed: unknown, expired, already used, or for another SPIFFE ID."""

    default_reason = Reason.JOIN_TOKEN_INVALID


class SealError(GarrisonError):
    """Sealed key material could not be opened or the key-encryption key could not be loaded."""

    default_reason = Reason.STAGE_ERROR


class CaError(GarrisonError):
    """The CA cannot do what was asked in its current state (e.g. no current intermediate)."""

    default_reason = Reason.CA_UNAVAILABLE


class StoreError(GarrisonError):
    """The control-plane store failed; SQLAlchemy errors are translated to this in ``store/``."""

    default_reason = Reason.STORE_UNAVAILABLE


class StoreBusy(StoreError):
    """A bounded wait for the store's write lock ran out (``SqlOAuthState.bounded_waits``): the
    caller may retry where a long wait is harmless (off the event loop)."""


class PolicyError(GarrisonError):
    default_reason = Reason.STAGE_ERROR


class UpstreamError(GarrisonError):
    default_reason = Reason.UPSTREAM_CONNECT_FAILED


__all__ = [
    "CaError",
    "ConfigError",
    "GarrisonError",
    "HttpError",
    "IdentityError",
    "JoinTokenError",
    "KeySetError",
    "PolicyError",
    "SealError",
    "StoreBusy",
    "StoreError",
    "SvidError",
    "TokenError",
    "UpstreamError",
]
