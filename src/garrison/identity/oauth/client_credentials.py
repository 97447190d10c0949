"""RFC 6749 §4.4 client credentials grant issuing RFC 9068 JWT access tokens. No I/O."""

from __future__ import annotations

from typing import ClassVar

from garrison.identity.oauth.access_tokens import AccessTokenMinter, TokenResponse
from garrison.identity.oauth.client_auth import AuthenticatedClient, ClientAuthenticator
from garrison.identity.oauth.clients import GRANT_CLIENT_CREDENTIALS
from garrison.identity.oauth.errors import ErrorCode, OAuthError
from garrison.identity.oauth.form import Form, parse_scope
from garrison.identity.oauth.grant import TokenGrant
from garrison.identity.oauth.targets import resolve_target


class ClientCredentialsGrant(TokenGrant):
    """RFC 6749 §4.4.2: ``grant_type=client_credentials``, optional ``scope``, ``resource``/``audience``.

    The token's ``sub`` and ``client_id`` are the client's SPIFFE ID (RFC 9068 §2.2, ARCHITECTURE
    §3); ``aud`` the one requested target (RFC 8707); ``scope`` the requested scopes, each of which
    the client must be allowed (an unknown one is refused, not dropped); ``cnf.x5t#S256`` binds the
    token to the client certificate when the client authenticated with mTLS (RFC 8705 §3).
    """

    grant_type: ClassVar[str] = GRANT_CLIENT_CREDENTIALS

    def __init__(
        self, authenticator: ClientAuthenticator, minter: AccessTokenMinter, audiences: frozenset[str]
    ) -> None:
        super().__init__(authenticator)
        self._minter = minter
        self._audiences = audiences

    def issue(self, form: Form, client: AuthenticatedClient, now: float) -> TokenResponse:
        self.check_allowed(client)
        reg = client.registration
        audience = resolve_target(form, reg, self._audiences)
        requested = parse_scope(form.get("scope"))
        # RFC 6749 §3.3: no scope requested -> the client's registered scopes (the default).
        scopes = reg.scopes if requested is None else requested
        if not scopes <= reg.scopes:
            raise OAuthError(
                ErrorCode.INVALID_SCOPE,
                "requested scope exceeds what the client may get",
                f"{reg.client_id} asked for {sorted(scopes - reg.scopes)}",
            )
        tok = self._minter.mint(
            sub=client.client_id,
            client_id=client.client_id,
            audience=audience,
            scopes=scopes,
            now=now,
            cnf_thumbprint=client.certificate_thumbprint,
        )
        return TokenResponse.of(tok, now)


__all__ = ["ClientCredentialsGrant"]
