"""Every denial code garrison can return: one enum, one place.

The code is at once the JSON error body, the metric label, the decision-record field and the test id.
A client only ever sees the code and its fixed public message, never an exception's text.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """A stable denial (or outcome) code. ``status`` and ``message`` are fixed per code."""

    status: int
    message: str

    def __new__(cls, value: str, status: int = 400, message: str = "") -> Reason:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.status = status
        obj.message = message or value.replace("_", " ")
        return obj

    # -- outcomes that are not denials ------------------------------------------------------
    ALLOWED = "allowed", 200, "allowed"

    # -- hygiene: framing and parsing (RFC 9112) ----------------------------------------------
    BAD_REQUEST = "bad_request", 400, "malformed request"
    FRAMING_CL_TE = "framing_cl_te", 400, "both Content-Length and Transfer-Encoding"
    FRAMING_BAD_CONTENT_LENGTH = "framing_bad_content_length", 400, "invalid Content-Length"
    FRAMING_DUPLICATE_CONTENT_LENGTH = "framing_duplicate_content_length", 400, "duplicate Content-Length"
    FRAMING_BAD_TRANSFER_ENCODING = "framing_bad_transfer_encoding", 400, "unsupported Transfer-Encoding"
    FRAMING_BAD_CHUNK = "framing_bad_chunk", 400, "invalid chunked encoding"
    FRAMING_OBS_FOLD = "framing_obs_fold", 400, "obsolete header line folding"
    BAD_HEADER = "bad_header", 400, "invalid header"
    BAD_HOST = "bad_host", 400, "missing or invalid Host header"
    METHOD_NOT_SUPPORTED = "method_not_supported", 501, "method not supported"
    VERSION_NOT_SUPPORTED = "version_not_supported", 505, "HTTP version not supported"
    HEADERS_TOO_LARGE = "headers_too_large", 431, "request header fields too large"
    TOO_MANY_HEADERS = "too_many_headers", 431, "too many request header fields"
    URI_TOO_LONG = "uri_too_long", 414, "request URI too long"
    BODY_TOO_LARGE = "body_too_large", 413, "request body too large"
    REQUEST_TIMEOUT = "request_timeout", 408, "request timed out"

    # -- hygiene: path normalization -------------------------------------------------------
    PATH_INVALID = "path_invalid", 400, "invalid request path"
    PATH_TRAVERSAL = "path_traversal", 400, "path escapes the root"
    PATH_ENCODED_SLASH = "path_encoded_slash", 400, "encoded slash or backslash in path"
    PATH_CASE_AMBIGUOUS = "path_case_ambiguous", 400, "path case is ambiguous between routes"

    # -- request validation (JSON Schema / OpenAPI, JSON-bomb limits) -----------------------------
    VALIDATION_FAILED = "validation_failed", 400, "request failed validation"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415, "unsupported media type"
    JSON_TOO_DEEP = "json_too_deep", 400, "JSON nested too deeply"
    JSON_TOO_LARGE = "json_too_large", 400, "JSON body has too many elements or too long a string"
    JSON_MALFORMED = "json_malformed", 400, "malformed JSON body"
    WAF_BLOCKED = "waf_blocked", 403, "forbidden"

    # -- routing ---------------------------------------------------------------------------
    NO_ROUTE = "no_route", 404, "not found"
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, "method not allowed"

    # -- authentication (RFC 6750 §3.1 semantics: invalid_token -> 401) -------------------
    AUTHN_REQUIRED = "authn_required", 401, "authentication required"
    TOKEN_MALFORMED = "token_malformed", 401, "malformed token"
    TOKEN_BAD_ALGORITHM = "token_bad_algorithm", 401, "token algorithm not allowed"
    TOKEN_UNKNOWN_KEY = "token_unknown_key", 401, "token signing key not known"
    TOKEN_BAD_SIGNATURE = "token_bad_signature", 401, "invalid token signature"
    TOKEN_EXPIRED = "token_expired", 401, "token expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid", 401, "token not yet valid"
    TOKEN_MISSING_CLAIM = "token_missing_claim", 401, "token is missing a required claim"
    TOKEN_BAD_ISSUER = "token_bad_issuer", 401, "token issuer not trusted"
    TOKEN_BAD_AUDIENCE = "token_bad_audience", 401, "token audience not accepted"
    TOKEN_BAD_TYPE = "token_bad_type", 401, "token type not accepted"
    TOKEN_LIFETIME_TOO_LONG = "token_lifetime_too_long", 401, "token lifetime exceeds the issuer's maximum"
    TOKEN_UNSUPPORTED_HEADER = "token_unsupported_header", 401, "unsupported token header parameter"
    TOKEN_REVOKED = "token_revoked", 401, "token revoked"
    TOKEN_BINDING_MISMATCH = "token_binding_mismatch", 401, "token not bound to this client certificate"
    KEYS_UNAVAILABLE = "keys_unavailable", 503, "token signing keys unavailable"

    # -- authorization ---------------------------------------------------------------------
    POLICY_DENY = "policy_deny", 403, "forbidden"
    POLICY_NO_MATCH = "policy_no_match", 403, "forbidden"

    # -- rate limiting ---------------------------------------------------------------------
    RATE_LIMITED = "rate_limited", 429, "too many requests"

    # -- upstream / forward ------------------------------------------------------------------
    UPSTREAM_UNAVAILABLE = "upstream_unavailable", 503, "service unavailable"
    UPSTREAM_CONNECT_FAILED = "upstream_connect_failed", 502, "bad gateway"
    UPSTREAM_BAD_RESPONSE = "upstream_bad_response", 502, "bad gateway"
    UPSTREAM_TIMEOUT = "upstream_timeout", 504, "gateway timeout"
    UPSTREAM_ERROR_MASKED = "upstream_error_masked", 502, "upstream error"

    # -- control plane: workload CA and store ---------------------------------------------------
    SVID_REFUSED = "svid_refused", 400, "certificate request refused"
    JOIN_TOKEN_INVALID = "join_token_invalid", 401, "join token invalid"
    STORE_UNAVAILABLE = "store_unavailable", 503, "service unavailable"
    CA_UNAVAILABLE = "ca_unavailable", 503, "service unavailable"
    SVID_REVOKED = "svid_revoked", 403, "client certificate revoked"
    CLIENT_CERT_UNKNOWN = "client_cert_unknown", 403, "client certificate not issued by this control plane"
    CLIENT_CERT_REQUIRED = "client_cert_required", 401, "client certificate required"
    ADMIN_REQUIRED = "admin_required", 403, "admin credentials required"
    NOT_FOUND = "not_found", 404, "not found"
    CONFLICT = "conflict", 409, "conflict"

    # -- control plane: OAuth2 token service (RFC 6749 §5.2 error codes) ---------------------------
    OAUTH_INVALID_REQUEST = "oauth_invalid_request", 400, "invalid_request"
    OAUTH_INVALID_CLIENT = "oauth_invalid_client", 401, "invalid_client"
    OAUTH_INVALID_GRANT = "oauth_invalid_grant", 400, "invalid_grant"
    OAUTH_INVALID_SCOPE = "oauth_invalid_scope", 400, "invalid_scope"
    OAUTH_UNAUTHORIZED_CLIENT = "oauth_unauthorized_client", 400, "unauthorized_client"
    OAUTH_UNSUPPORTED_GRANT_TYPE = "oauth_unsupported_grant_type", 400, "unsupported_grant_type"
    OAUTH_INVALID_TARGET = "oauth_invalid_target", 400, "invalid_target"
    OAUTH_UNSUPPORTED_TOKEN_TYPE = "oauth_unsupported_token_type", 400, "unsupported_token_type"

    # -- internal ----------------------------------------------------------------------------
    STAGE_ERROR = "stage_error", 500, "internal error"
    OVERLOADED = "overloaded", 503, "service unavailable"


__all__ = ["Reason"]
