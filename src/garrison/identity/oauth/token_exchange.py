"""RFC 8693 token exchange: an access token for a user -> a narrower one for one target service.

The gateway uses it to mint per-hop internal tokens (ARCHITECTURE §2 step 9). No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

from garrison.errors import TokenError
from garrison.identity.oauth.access_tokens import ACCESS_TOKEN_TYPE, AccessTokenMinter, TokenResponse
from garrison.identity.oauth.client_auth import AuthenticatedClient, ClientAuthenticator
from garrison.identity.oauth.clients import GRANT_TOKEN_EXCHANGE
from garrison.identity.oauth.errors import ErrorCode, OAuthError
from garrison.identity.oauth.form import Form, parse_scope
from garrison.identity.oauth.grant import TokenGrant
from garrison.identity.oauth.state import RevocationStore
from garrison.identity.oauth.targets import resolve_target
from garrison.identity.tokens import TokenVerifier, VerifiedToken, parse_compact

JWT_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 RFC 8693 §3
SUBJECT_TOKEN_TYPES: Final = frozenset({ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE})


def _bad(description: str, detail: str = "") -> OAuthError:
    # RFC 8693 §2.2.2: a bad request or a subject_token "invalid for any reason" -> invalid_request.
    return OAuthError(ErrorCode.INVALID_REQUEST, description, detail)


class TokenExchangeGrant(TokenGrant):
    """RFC 8693 §2.1: ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``.

    ``subject_token`` (REQUIRED) is an access token of ours or of a configured issuer, verified by
    that issuer's ``TokenVerifier`` (and our revocation list); ``subject_token_type`` (REQUIRED) is
    ``access_token`` or ``jwt``. The new token (§2.2.1) keeps the subject's ``sub``, names the calling
    client in ``act`` (§4.1, nesting any earlier ``act``), has the one requested ``aud``, a ``scope``
    never wider than the subject's (invalid_scope otherwise), and never outlives the subject token.
    Only clients registered for this grant may call it (unauthorized_client).
    """

    grant_type: ClassVar[str] = GRANT_TOKEN_EXCHANGE

    def __init__(
        self,
        authenticator: ClientAuthenticator,
        minter: AccessTokenMinter,
        audiences: frozenset[str],
        *,
        own_verifier: TokenVerifier,
        revocations: RevocationStore,
        external_verifiers: Mapping[str, TokenVerifier] | None = None,
    ) -> None:
        super().__init__(authenticator)
        self._minter = minter
        self._audiences = audiences
        self._own_issuer = minter.issuer
        self._verifiers: dict[str, TokenVerifier] = dict(external_verifiers or {})
        self._verifiers[self._own_issuer] = own_verifier
        self._revocations = revocations

    def _subject(self, raw: str, now: float) -> VerifiedToken:
        try:
            parsed = parse_compact(raw)
            iss = parsed.unverified_issuer
            verifier = self._verifiers.get(iss) if isinstance(iss, str) else None
            if verifier is None:
                raise _bad(
                    "subject_token is not acceptable", f"subject_token issuer {str(iss)[:100]!r} not trusted"
                )
            vt = verifier.verify_parsed(parsed, now)
        except TokenError as exc:
            raise _bad("subject_token is not acceptable", f"subject_token: {exc.reason.value}") from None
        if vt.iss == self._own_issuer:
            jti = vt.claims.get("jti")
            if not isinstance(jti, str) or self._revocations.is_revoked(jti, now):
                raise _bad("subject_token is not acceptable", "subject_token revoked")
        elif vt.sub.startswith("spiffe://"):
            # identity.principal: an external issuer must never mint a workload principal; exchanging
            # its token into one of ours would launder a chosen `sub` into a workload identity.
            raise _bad("subject_token is not acceptable", f"external subject {vt.sub[:100]!r} is a SPIFFE ID")
        return vt

    def issue(self, form: Form, client: AuthenticatedClient, now: float) -> TokenResponse:
        self.check_allowed(client)
        raw = form.require("subject_token")
        if form.require("subject_token_type") not in SUBJECT_TOKEN_TYPES:
            raise _bad("unsupported subject_token_type")
        # RFC 8693 §2.1: actor_token_type "MUST NOT be included" without actor_token. The actor is
        # the authenticated client itself, so an actor_token is not accepted at all.
        if "actor_token_type" in form and "actor_token" not in form:
            raise _bad("actor_token_type without actor_token")
        if "actor_token" in form:
            raise _bad("actor_token is not supported; the authenticated client is the actor")
        rtt = form.get("requested_token_type")
        if rtt is not None and rtt != ACCESS_TOKEN_TYPE:
            raise _bad("unsupported requested_token_type")
        audience = resolve_target(form, client.registration, self._audiences)
        vt = self._subject(raw, now)
        requested = parse_scope(form.get("scope"))
        scopes = vt.scopes if requested is None else requested
        if not scopes <= vt.scopes:
            raise OAuthError(
                ErrorCode.INVALID_SCOPE,
                "requested scope is wider than the subject token's",
                f"{client.client_id} asked for {sorted(scopes - vt.scopes)} beyond the subject's",
            )
        act: dict[str, Any] = {"sub": client.client_id}
        prior = vt.claims.get("act")
        if isinstance(prior, dict):
            act["act"] = prior  # RFC 8693 §4.1: the chain of earlier actors, outermost current
        tok = self._minter.mint(
            sub=vt.sub,
            client_id=client.client_id,
            audience=audience,
            scopes=scopes,
            now=now,
            cnf_thumbprint=client.certificate_thumbprint,
            act=act,
            not_after=vt.exp,
        )
        return TokenResponse.of(tok, now, exchanged=True)


__all__ = ["JWT_TOKEN_TYPE", "SUBJECT_TOKEN_TYPES", "TokenExchangeGrant"]
