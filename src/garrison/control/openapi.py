"""The control-plane API's route table (``ROUTES``) and the OpenAPI 3.1 document built from it.

``app.build_app`` mounts exactly these ``Endpoint``s and this module documents exactly them, so
the document cannot drift from what is served. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from garrison.reasons import Reason

Auth = Literal["public", "admin", "mtls"]
Body = Literal["none", "json", "form"]

OPENAPI_VERSION: Final = "3.1.0"
API_VERSION: Final = "1"
# An HTTP method OpenAPI has no field for: documented with an x- extension (OpenAPI 3.1 §4.8.8.1).
EXTENSION_METHODS: Final = frozenset({"LIST"})
_IDENT: Final = re.compile(r"[^A-Za-z0-9]+")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One path with its methods, handler and the facts the document states about it."""

    path: str
    methods: tuple[str, ...]
    handler: str  # the ``app.ControlPlaneApi`` method that serves it
    summary: str
    auth: Auth = "public"
    body: Body = "none"
    request_schema: dict[str, Any] | None = field(default=None, repr=False)
    success: int = 200
    query: tuple[str, ...] = ()
    errors: tuple[Reason, ...] = ()


def _schema(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": props, "required": required}


R = Reason
_ADMIN: Final = (R.ADMIN_REQUIRED,)
_JSON: Final = (R.VALIDATION_FAILED, R.JSON_MALFORMED, R.UNSUPPORTED_MEDIA_TYPE, R.BODY_TOO_LARGE)
_STR: Final = {"type": "string"}
_NUM: Final = {"type": "number"}
_CSR: Final = {"type": "string", "description": "PKCS#10 CSR, PEM, EC P-256, one URI SAN"}

# fmt: off
ROUTES: Final[tuple[Endpoint, ...]] = (
    Endpoint("/healthz", ("GET",), "healthz", "Liveness"),
    Endpoint("/openapi.json", ("GET",), "openapi", "This document"),
    Endpoint("/.well-known/oauth-authorization-server", ("GET",), "metadata", "RFC 8414 metadata"),
    Endpoint("/.well-known/openid-configuration", ("GET",), "metadata", "Same document as RFC 8414 metadata"),
    Endpoint("/oauth2/jwks", ("GET",), "jwks", "Access-token signing keys (JWK Set)"),
    Endpoint("/oauth2/token", ("POST",), "token",
             "RFC 6749 token endpoint: client_credentials, token exchange; private_key_jwt, tls_client_auth",
             body="form", errors=(R.OAUTH_INVALID_REQUEST, R.OAUTH_INVALID_CLIENT, R.BODY_TOO_LARGE)),
    Endpoint("/oauth2/introspect", ("POST",), "introspect", "RFC 7662 introspection",
             body="form", errors=(R.OAUTH_INVALID_REQUEST, R.OAUTH_INVALID_CLIENT)),
    Endpoint("/oauth2/revoke", ("POST",), "revoke_token", "RFC 7009 revocation (200 for unknown tokens)",
             body="form", errors=(R.OAUTH_INVALID_REQUEST, R.OAUTH_INVALID_CLIENT)),
    Endpoint("/v1/trust", ("GET",), "trust", "Trust bundle and revocations, pulled by data planes",
             errors=(R.STORE_UNAVAILABLE,)),
    Endpoint("/v1/bundle", ("GET",), "bundle", "SPIFFE trust bundle", errors=(R.STORE_UNAVAILABLE,)),
    Endpoint("/v1/svids/join", ("POST",), "join", "First SVID, for a one-time join token", body="json",
             request_schema=_schema({"join_token": _STR, "csr": _CSR}, ["join_token", "csr"]), success=201,
             errors=(R.JOIN_TOKEN_INVALID, R.SVID_REFUSED, *_JSON)),
    Endpoint("/v1/svids/renew", ("POST",), "renew",
             "New SVID, authenticated by the current one (mTLS); a refusal is 403 svid_refused",
             auth="mtls", body="json", request_schema=_schema({"csr": _CSR}, ["csr"]), success=201,
             errors=(R.CLIENT_CERT_REQUIRED, R.SVID_REFUSED, *_JSON)),
    Endpoint("/v1/svids", ("GET", "LIST"), "list_svids", "Issued SVIDs", auth="admin",
             query=("spiffe_id", "valid"), errors=(*_ADMIN, R.VALIDATION_FAILED)),
    Endpoint("/v1/svids", ("POST",), "issue_svid", "Admin issuance of an SVID", auth="admin", body="json",
             request_schema=_schema({"csr": _CSR, "ttl_seconds": _NUM,
                                     "server_names": {"type": "array", "items": _STR}}, ["csr"]),
             success=201, errors=(*_ADMIN, R.SVID_REFUSED, *_JSON)),
    Endpoint("/v1/revocations", ("POST",), "revoke_svids", "Revoke SVIDs by serial or by SPIFFE ID",
             auth="admin", body="json",
             request_schema=_schema({"serial": _STR, "spiffe_id": _STR, "reason": _STR}, []),
             errors=(*_ADMIN, R.NOT_FOUND, *_JSON)),
    Endpoint("/v1/join-tokens", ("POST",), "join_tokens", "Create a one-time join token", auth="admin",
             body="json", request_schema=_schema({"spiffe_id": _STR, "ttl_seconds": _NUM}, ["spiffe_id"]),
             success=201, errors=(*_ADMIN, *_JSON)),
    Endpoint("/v1/clients", ("GET", "LIST"), "list_clients", "Registered OAuth clients", auth="admin",
             query=("client_id",), errors=(*_ADMIN, R.NOT_FOUND)),
    Endpoint("/v1/clients", ("PUT",), "put_client", "Register/replace a client (201 new, 200 replaced)",
             auth="admin", body="json", success=201, errors=(*_ADMIN, *_JSON)),
    Endpoint("/v1/clients", ("DELETE",), "delete_client", "Remove an OAuth client", auth="admin",
             query=("client_id",), success=204, errors=(*_ADMIN, R.NOT_FOUND, R.VALIDATION_FAILED)),
    Endpoint("/v1/signing-keys/rotate", ("POST",), "rotate_signing_key", "Rotate the token signing key now",
             auth="admin", errors=(*_ADMIN, R.CONFLICT)),
)
# fmt: on


_ERROR_SCHEMA: Final = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "enum": sorted(r.value for r in Reason)},
        "message": {"type": "string"},
        "detail": {"type": "string"},
    },
}
_OAUTH_ERROR_SCHEMA: Final = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}


def _operation(ep: Endpoint, method: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": ep.summary,
        "operationId": method.lower() + "_" + _IDENT.sub("_", ep.path.strip("/")),
        "responses": {
            str(ep.success): {
                "description": "success",
                **({} if ep.success == 204 else {"content": {"application/json": {"schema": {}}}}),
            }
        },
    }
    if ep.auth == "admin":
        op["security"] = [{"adminToken": []}, {"mutualTLS": []}]
    elif ep.auth == "mtls":
        op["security"] = [{"mutualTLS": []}]
    if ep.query:
        op["parameters"] = [
            {"name": q, "in": "query", "required": False, "schema": {"type": "string"}} for q in ep.query
        ]
    if ep.body == "json":
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ep.request_schema or {"type": "object"}}},
        }
    elif ep.body == "form":
        op["requestBody"] = {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
        }
    ref = (
        "#/components/schemas/OAuthError" if ep.path.startswith("/oauth2/") else "#/components/schemas/Error"
    )
    for reason in ep.errors:
        op["responses"].setdefault(
            str(reason.status),
            {"description": reason.value, "content": {"application/json": {"schema": {"$ref": ref}}}},
        )
    return op


def openapi_document(endpoints: Sequence[Endpoint], server_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints`` (``LIST`` operations appear as ``x-list``)."""
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        item = paths.setdefault(ep.path, {})
        for method in ep.methods:
            key = f"x-{method.lower()}" if method in EXTENSION_METHODS else method.lower()
            item[key] = _operation(ep, method)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "garrison control plane",
            "version": API_VERSION,
            "description": "Workload CA, OAuth2 token service and trust distribution. "
            "`x-list` operations are served for the HTTP method LIST.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR_SCHEMA, "OAuthError": _OAUTH_ERROR_SCHEMA},
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "control_plane.admin_token_file",
                },
                "mutualTLS": {
                    "type": "mutualTLS",
                    "description": "an X.509-SVID issued by this control plane",
                },
            },
        },
    }


def documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """``(METHOD, path)`` pairs a document describes (``x-list`` counts as LIST)."""
    out: set[tuple[str, str]] = set()
    for path, item in doc.get("paths", {}).items():
        for key in item:
            method = key[2:] if key.startswith("x-") else key
            out.add((method.upper(), path))
    return out


__all__ = ["EXTENSION_METHODS", "ROUTES", "Endpoint", "documented_operations", "openapi_document"]
