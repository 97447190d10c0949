"""RFC 8414 authorization server metadata (also served as OIDC discovery), and the server settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from garrison.identity.oauth.access_tokens import DEFAULT_ACCESS_TOKEN_TTL
from garrison.identity.oauth.client_auth import DEFAULT_LEEWAY, DEFAULT_MAX_ASSERTION_LIFETIME
from garrison.identity.oauth.clients import ASSERTION_ALGORITHMS, AuthMethod

RFC8414_SUFFIX: Final = "oauth-authorization-server"
OIDC_SUFFIX: Final = "openid-configuration"


def _check_url(name: str, url: str, *, insecure_http: bool, issuer: bool = False) -> None:
    parts = urlsplit(url)
    # RFC 8414 §2: issuer "https" scheme, no query or fragment; endpoints are https too.
    if parts.scheme != "https" and not (insecure_http and parts.scheme == "http"):
        raise ValueError(f"{name} must be an https URL")
    if not parts.netloc:
        raise ValueError(f"{name} must be an absolute URL")
    if parts.fragment or "#" in url or (issuer and (parts.query or "?" in url)):
        raise ValueError(f"{name} must not have a {'query or ' if issuer else ''}fragment")


def well_known_url(issuer: str, suffix: str = RFC8414_SUFFIX) -> str:
    """RFC 8414 §3.1: ``/.well-known/<suffix>`` inserted between the host and the issuer's path."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, f"/.well-known/{suffix}{path}", "", ""))


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The token service's fixed configuration. ``audiences``: every target service tokens may name."""

    issuer: str
    audiences: frozenset[str]
    token_endpoint: str = ""
    jwks_uri: str = ""
    introspection_endpoint: str = ""
    revocation_endpoint: str = ""
    access_token_ttl: float = DEFAULT_ACCESS_TOKEN_TTL
    leeway: float = DEFAULT_LEEWAY  # the gateways' clock-skew leeway (ARCHITECTURE §2 step 5)
    max_assertion_lifetime: float = DEFAULT_MAX_ASSERTION_LIFETIME
    signing_alg: str = "ES256"
    insecure_allow_http: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        base = self.issuer.rstrip("/")
        for name, default in (
            ("token_endpoint", f"{base}/oauth2/token"),
            ("jwks_uri", f"{base}/oauth2/jwks"),
            ("introspection_endpoint", f"{base}/oauth2/introspect"),
            ("revocation_endpoint", f"{base}/oauth2/revoke"),
        ):
            if not getattr(self, name):
                object.__setattr__(self, name, default)
        _check_url("issuer", self.issuer, insecure_http=self.insecure_allow_http, issuer=True)
        for name in ("token_endpoint", "jwks_uri", "introspection_endpoint", "revocation_endpoint"):
            _check_url(name, getattr(self, name), insecure_http=self.insecure_allow_http)
        if not self.audiences:
            raise ValueError("at least one audience (target service) is required")
        if not 0 < self.access_token_ttl <= 3600:
            raise ValueError("access_token_ttl must be in (0, 3600] seconds")
        if not 0 < self.max_assertion_lifetime <= 3600:
            raise ValueError("max_assertion_lifetime must be in (0, 3600] seconds")

    @property
    def min_rotation_interval(self) -> float:
        """Rotations closer than this would unpublish a key whose tokens are still accepted."""
        return self.access_token_ttl + self.leeway


class MetadataEndpoint:
    """RFC 8414 §2 metadata; the same document answers OIDC discovery (``jwks_uri`` etc.).

    Built once: the document is fixed for a given configuration (the keys are in the JWKS, not here).
    """

    def __init__(self, settings: ServerSettings, grant_types: tuple[str, ...]) -> None:
        doc: dict[str, Any] = {
            "issuer": settings.issuer,
            "token_endpoint": settings.token_endpoint,
            "jwks_uri": settings.jwks_uri,
            "introspection_endpoint": settings.introspection_endpoint,
            "revocation_endpoint": settings.revocation_endpoint,
            # RFC 8414 §2 REQUIRED; no authorization endpoint, so no response type is supported.
            "response_types_supported": [],
            "grant_types_supported": list(grant_types),
            "token_endpoint_auth_methods_supported": [m.value for m in AuthMethod],
            # RFC 8414 §2: "none" MUST NOT be used; asymmetric algorithms only.
            "token_endpoint_auth_signing_alg_values_supported": sorted(ASSERTION_ALGORITHMS),
            "introspection_endpoint_auth_methods_supported": [m.value for m in AuthMethod],
            "introspection_endpoint_auth_signing_alg_values_supported": sorted(ASSERTION_ALGORITHMS),
            "revocation_endpoint_auth_methods_supported": [m.value for m in AuthMethod],
            "revocation_endpoint_auth_signing_alg_values_supported": sorted(ASSERTION_ALGORITHMS),
            "tls_client_certificate_bound_access_tokens": True,  # RFC 8705 §3.3
            # Not standard in RFC 8414 for access tokens; OIDC-style hint for verifiers.
            "access_token_signing_alg_values_supported": [settings.signing_alg],
        }
        self._doc = doc
        self._bytes = json.dumps(doc, separators=(",", ":")).encode()
        self.paths = (
            urlsplit(well_known_url(settings.issuer)).path,
            urlsplit(well_known_url(settings.issuer, OIDC_SUFFIX)).path,
        )

    def document(self) -> dict[str, Any]:
        return json.loads(self._bytes)  # type: ignore[no-any-return]

    @property
    def body_bytes(self) -> bytes:
        return self._bytes

    def __repr__(self) -> str:
        return f"<MetadataEndpoint {self._doc['issuer']}>"


__all__ = ["OIDC_SUFFIX", "RFC8414_SUFFIX", "MetadataEndpoint", "ServerSettings", "well_known_url"]
