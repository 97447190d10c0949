"""``TokenService``: the token endpoint, introspection, revocation, metadata and JWKS, wired once.

Sans-IO: the control-plane HTTP layer calls ``handle`` methods with form parameters, the verified
TLS peer certificate and ``now``, and writes back ``status``, ``headers`` and ``body()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from garrison.identity.oauth.access_tokens import AccessTokenMinter, own_token_verifier
from garrison.identity.oauth.client_auth import ClientAuthenticator
from garrison.identity.oauth.client_credentials import ClientCredentialsGrant
from garrison.identity.oauth.clients import ClientRegistry
from garrison.identity.oauth.grant import TokenEndpoint
from garrison.identity.oauth.introspection import IntrospectionEndpoint
from garrison.identity.oauth.metadata import MetadataEndpoint, ServerSettings
from garrison.identity.oauth.revocation import RevocationEndpoint
from garrison.identity.oauth.signing_keys import SigningKeyRing
from garrison.identity.oauth.state import ReplayStore, RevocationStore
from garrison.identity.oauth.token_exchange import TokenExchangeGrant
from garrison.identity.tokens import TokenVerifier


class TokenService:
    """Everything of the OAuth2 token service (ARCHITECTURE §3) except HTTP."""

    def __init__(
        self,
        settings: ServerSettings,
        ring: SigningKeyRing,
        registry: ClientRegistry,
        *,
        replay: ReplayStore,
        revocations: RevocationStore,
        external_verifiers: Mapping[str, TokenVerifier] | None = None,
    ) -> None:
        self.settings = settings
        self.ring = ring
        self.authenticator = ClientAuthenticator(
            registry,
            replay,
            issuer=settings.issuer,
            token_endpoint=settings.token_endpoint,
            leeway=settings.leeway,
            max_assertion_lifetime=settings.max_assertion_lifetime,
        )
        self.minter = AccessTokenMinter(ring, settings.issuer, settings.access_token_ttl)

        def verifier(leeway: float) -> TokenVerifier:
            return own_token_verifier(
                ring,
                issuer=settings.issuer,
                jwks_uri=settings.jwks_uri,
                audiences=settings.audiences,
                leeway=leeway,
                max_lifetime=settings.access_token_ttl + 1,  # iat and exp are whole seconds
            )

        strict = verifier(0.0)  # our own clock decides whether our token is active
        aud = settings.audiences
        self.client_credentials = ClientCredentialsGrant(self.authenticator, self.minter, aud)
        self.token_exchange = TokenExchangeGrant(
            self.authenticator,
            self.minter,
            aud,
            own_verifier=strict,
            revocations=revocations,
            external_verifiers=external_verifiers,
        )
        self.token_endpoint = TokenEndpoint([self.client_credentials, self.token_exchange])
        self.introspection = IntrospectionEndpoint(self.authenticator, strict, revocations)
        self.revocation = RevocationEndpoint(
            self.authenticator, verifier(settings.leeway), revocations, gateway_leeway=settings.leeway
        )
        self.metadata = MetadataEndpoint(settings, self.token_endpoint.grant_types)

    def jwks(self) -> dict[str, Any]:
        return self.ring.jwks()

    def revoked_jtis(self, now: float) -> frozenset[str]:
        return self.revocation.revoked_jtis(now)

    def __repr__(self) -> str:
        return f"<TokenService {self.settings.issuer} {self.ring!r}>"


__all__ = ["TokenService"]
