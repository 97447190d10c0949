"""The one exception tree of garrison.

    GarrisonError                 every error garrison raises on purpose; carries a Reason
    ├── ConfigError               garrison.yaml is invalid (names the key path / line)
    ├── HttpError                 a request violates HTTP hygiene (framing, limits, path)
    ├── IdentityError
    │   ├── TokenError            a bearer token failed verification
    │   └── KeySetError           signing keys could not be obtained or parsed
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


class PolicyError(GarrisonError):
    default_reason = Reason.STAGE_ERROR


class UpstreamError(GarrisonError):
    default_reason = Reason.UPSTREAM_CONNECT_FAILED


__all__ = [
    "ConfigError",
    "GarrisonError",
    "HttpError",
    "IdentityError",
    "KeySetError",
    "PolicyError",
    "TokenError",
    "UpstreamError",
]
