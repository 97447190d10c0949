"""Client authentication at the token endpoint: ``private_key_jwt`` and ``tls_client_auth``.

RFC 7523 §3 / RFC 7521 §4.2 assertions are verified by the gateway's own ``TokenVerifier`` (one per
client, keyed to its registered JWKs); RFC 8705 §2.1.2 compares the registered SPIFFE ID with the
URI SAN of a peer certificate that the TLS layer has already verified. No I/O; clock injected.
Every failure is the same public ``invalid_client`` (RFC 6749 §5.2); the detail is for the operator.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from garrison.config.models import Issuer
from garrison.errors import TokenError
from garrison.identity.ca.revocation import svid_id_of
from garrison.identity.oauth.clients import (
    ASSERTION_ALGORITHMS,
    AuthMethod,
    ClientRegistration,
    ClientRegistry,
)
from garrison.identity.oauth.errors import ErrorCode, OAuthError
from garrison.identity.oauth.form import Form
from garrison.identity.oauth.state import ReplayStore
from garrison.identity.tokens import TokenVerifier, parse_compact

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"  # RFC 7523 §2.2
DEFAULT_MAX_ASSERTION_LIFETIME: Final = 300.0
DEFAULT_LEEWAY: Final = 60.0
_FAILED = "client authentication failed"


def _refuse(detail: str) -> OAuthError:
    return OAuthError(ErrorCode.INVALID_CLIENT, _FAILED, detail)


def certificate_thumbprint(cert: x509.Certificate) -> str:
    """RFC 8705 §3.1 ``x5t#S256``: base64url SHA-256 of the DER certificate, no padding."""
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def svid_uri(cert: x509.Certificate) -> str | None:
    """The SPIFFE ID of an X.509-SVID: its one URI SAN (X509-SVID §2), else None."""
    return svid_id_of(cert)


@dataclass(frozen=True, slots=True)
class ClientAuthContext:
    """What the transport knows about the caller: its TLS peer certificate, already chain-verified."""

    peer_certificate: x509.Certificate | None = None

    def __repr__(self) -> str:
        return f"<ClientAuthContext peer={'yes' if self.peer_certificate is not None else 'no'}>"


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    """A client that proved its identity. ``certificate_thumbprint`` is set only for mTLS."""

    registration: ClientRegistration
    method: AuthMethod
    certificate_thumbprint: str | None = None

    @property
    def client_id(self) -> str:
        return self.registration.client_id.value


class ClientAuthenticator:
    """RFC 7523 §3 and RFC 8705 §2.1.2 client authentication. Built once; thread-safe."""

    def __init__(
        self,
        registry: ClientRegistry,
        replay: ReplayStore,
        *,
        issuer: str,
        token_endpoint: str,
        leeway: float = DEFAULT_LEEWAY,
        max_assertion_lifetime: float = DEFAULT_MAX_ASSERTION_LIFETIME,
    ) -> None:
        self._registry = registry
        self._replay = replay
        # RFC 7523 §3 item 3: the AS's issuer identifier or its token endpoint URL; nothing else.
        self._audiences = [issuer, token_endpoint] if token_endpoint != issuer else [issuer]
        self._leeway = leeway
        self._max_lifetime = max_assertion_lifetime
        self._verifiers: dict[str, tuple[ClientRegistration, TokenVerifier]] = {}
        self._lock = threading.Lock()

    def authenticate(self, form: Form, ctx: ClientAuthContext, now: float) -> AuthenticatedClient:
        if "client_secret" in form:
            raise _refuse("client_secret is not an accepted authentication method")
        if "client_assertion" in form or "client_assertion_type" in form:
            return self._private_key_jwt(form, now)
        return self._tls_client_auth(form, ctx, now)

    # -- RFC 7523 §2.2 / §3 -------------------------------------------------------------------
    def _verifier(self, reg: ClientRegistration) -> TokenVerifier:
        cid = reg.client_id.value
        cached = self._verifiers.get(cid)
        if cached is not None and cached[0] is reg:
            return cached[1]
        keyset = reg.keyset
        issuer = Issuer.model_validate(
            {
                "name": "client-" + hashlib.sha256(cid.encode()).hexdigest()[:24],
                "issuer": cid,  # RFC 7523 §3 item 1: iss is the client_id
                "audiences": self._audiences,
                "algorithms": sorted(ASSERTION_ALGORITHMS),
                "keys": [{"jwk": dict(j)} for j in reg.jwks],
                "typ": None,  # RFC 7523 defines no typ; RFC 10070's is not yet sent by clients
                "leeway_seconds": self._leeway,
                # RFC 7523 §3 item 4: the AS may reject an exp unreasonably far in the future.
                "max_token_lifetime_seconds": self._max_lifetime,
            }
        )
        verifier = TokenVerifier(issuer, lambda: keyset)
        with self._lock:
            self._verifiers[cid] = (reg, verifier)
        return verifier

    def _private_key_jwt(self, form: Form, now: float) -> AuthenticatedClient:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise _refuse("client_assertion_type is not jwt-bearer")
        raw = form.get("client_assertion")
        if raw is None:
            raise _refuse("client_assertion is missing")
        try:
            parsed = parse_compact(raw)  # RFC 7521 §4.2: a single JWT
        except TokenError as exc:
            raise _refuse(f"client_assertion: {exc.reason.value}") from None
        sub = parsed.payload.get("sub")
        client_id = form.get("client_id") or sub
        # RFC 7523 §3 item 2: sub MUST be the client_id (and match a client_id parameter, if sent).
        if not isinstance(client_id, str) or sub != client_id:
            raise _refuse("assertion sub does not name the client")
        reg = self._registry.get(client_id)
        if reg is None or reg.auth_method is not AuthMethod.PRIVATE_KEY_JWT:
            raise _refuse(f"{client_id[:100]!r} is not a private_key_jwt client")
        try:
            # alg allowlist tied to the registered keys, signature, iss == client_id, aud, exp,
            # nbf/iat with leeway, lifetime cap: the gateway's verifier does all of it.
            vt = self._verifier(reg).verify_parsed(parsed, now)
        except TokenError as exc:
            raise _refuse(f"client_assertion of {client_id}: {exc.reason.value}: {exc}") from None
        jti = vt.claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _refuse("client_assertion has no jti")  # made mandatory here (RFC 7523 §3 item 7)
        # RFC 7523 §3 item 7: single use, remembered as long as any verifier would accept it.
        if not self._replay.use_jti(client_id, jti, vt.exp + self._leeway, now):
            raise _refuse(f"client_assertion jti replayed by {client_id}")
        return AuthenticatedClient(reg, AuthMethod.PRIVATE_KEY_JWT)

    # -- RFC 8705 §2.1 ------------------------------------------------------------------------------
    def _tls_client_auth(self, form: Form, ctx: ClientAuthContext, now: float) -> AuthenticatedClient:
        client_id = form.get("client_id")
        if client_id is None:
            raise _refuse("no client credentials")  # RFC 8705 §2: client_id MUST be sent
        reg = self._registry.get(client_id)
        if reg is None or reg.auth_method is not AuthMethod.TLS_CLIENT_AUTH:
            raise _refuse(f"{client_id[:100]!r} is not a tls_client_auth client")
        cert = ctx.peer_certificate
        if cert is None:
            raise _refuse(f"{client_id}: no client certificate")
        # RFC 8705 §2.1.2 (tls_client_auth_san_uri): the registered SPIFFE ID, exact comparison.
        if svid_uri(cert) != client_id:
            raise _refuse(f"{client_id}: the certificate's URI SAN is another identity")
        # The TLS layer verified the chain; checking the validity window again costs nothing.
        if not cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp():
            raise _refuse(f"{client_id}: the certificate is not valid now")
        return AuthenticatedClient(reg, AuthMethod.TLS_CLIENT_AUTH, certificate_thumbprint(cert))

    def __repr__(self) -> str:
        return f"<ClientAuthenticator aud={self._audiences}>"


__all__ = [
    "ASSERTION_TYPE",
    "AuthenticatedClient",
    "ClientAuthContext",
    "ClientAuthenticator",
    "certificate_thumbprint",
    "svid_uri",
]
