"""OAuth 2.0 error values (RFC 6749 §5.2, RFC 7009 §2.2.1, RFC 8693 §2.2.2, RFC 8707 §2).

An endpoint returns an ``ErrorResponse``; inside the package the same value travels in an
``OAuthError`` exception (part of ``garrison.errors``' tree). The description is a fixed public
sentence chosen here: never an exception's text, never a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from garrison.errors import IdentityError
from garrison.reasons import Reason


class ErrorCode(StrEnum):
    """RFC 6749 §5.2 codes, ``invalid_target`` (RFC 8707 §2), ``unsupported_token_type`` (RFC 7009)."""

    INVALID_REQUEST = "invalid_request"
    INVALID_CLIENT = "invalid_client"
    INVALID_GRANT = "invalid_grant"
    INVALID_SCOPE = "invalid_scope"
    UNAUTHORIZED_CLIENT = "unauthorized_client"
    UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
    INVALID_TARGET = "invalid_target"
    UNSUPPORTED_TOKEN_TYPE = "unsupported_token_type"  # noqa: S105
    SERVER_ERROR = "server_error"


# RFC 6749 §5.2: 400 unless stated; invalid_client -> 401 (we always answer 401 so that clients
# never learn which check failed from the status). server_error is a 500 by RFC 6749 §4.1.2.1 analogy.
_STATUS = {ErrorCode.INVALID_CLIENT: 401, ErrorCode.SERVER_ERROR: 500}

_REASON = {
    ErrorCode.INVALID_REQUEST: Reason.OAUTH_INVALID_REQUEST,
    ErrorCode.INVALID_CLIENT: Reason.OAUTH_INVALID_CLIENT,
    ErrorCode.INVALID_GRANT: Reason.OAUTH_INVALID_GRANT,
    ErrorCode.INVALID_SCOPE: Reason.OAUTH_INVALID_SCOPE,
    ErrorCode.UNAUTHORIZED_CLIENT: Reason.OAUTH_UNAUTHORIZED_CLIENT,
    ErrorCode.UNSUPPORTED_GRANT_TYPE: Reason.OAUTH_UNSUPPORTED_GRANT_TYPE,
    ErrorCode.INVALID_TARGET: Reason.OAUTH_INVALID_TARGET,
    ErrorCode.UNSUPPORTED_TOKEN_TYPE: Reason.OAUTH_UNSUPPORTED_TOKEN_TYPE,
    ErrorCode.SERVER_ERROR: Reason.STAGE_ERROR,
}


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """A JSON error body (RFC 6749 §5.2) and its HTTP status."""

    error: ErrorCode
    description: str = ""

    @property
    def status(self) -> int:
        return _STATUS.get(self.error, 400)

    @property
    def reason(self) -> Reason:
        return _REASON.get(self.error, Reason.BAD_REQUEST)

    @property
    def headers(self) -> dict[str, str]:
        # RFC 6749 §5.1/§5.2: no caching; a 401 names the scheme the client may retry with.
        h = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if self.status == 401:
            h["WWW-Authenticate"] = 'Bearer error="invalid_client"'
        return h

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error.value}
        if self.description:
            out["error_description"] = self.description
        return out


class OAuthError(IdentityError):
    """Raised inside the token service; endpoints turn it into its ``response``.

    ``str()`` may hold operator detail (for logs); the client sees ``response`` only.
    """

    def __init__(self, code: ErrorCode, description: str, detail: str = "") -> None:
        self.response = ErrorResponse(code, description)
        super().__init__(detail or description, self.response.reason)

    @property
    def code(self) -> ErrorCode:
        return self.response.error


__all__ = ["ErrorCode", "ErrorResponse", "OAuthError"]
