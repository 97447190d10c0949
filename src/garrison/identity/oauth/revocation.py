"""RFC 7009 token revocation, and the bounded revoked-``jti`` set gateways pull. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from garrison.errors import TokenError
from garrison.identity.oauth.client_auth import ClientAuthContext, ClientAuthenticator
from garrison.identity.oauth.errors import ErrorCode, ErrorResponse, OAuthError
from garrison.identity.oauth.form import Form, FormInput
from garrison.identity.oauth.state import RevocationStore
from garrison.identity.tokens import TokenVerifier

TOKEN_TYPE_HINTS: Final = frozenset({"access_token", "refresh_token"})  # RFC 7009 §2.1, §4.1.2


@dataclass(frozen=True, slots=True)
class RevocationResponse:
    """RFC 7009 §2.2: 200 with an empty body, whether or not the token was valid."""

    status: int = 200

    @property
    def headers(self) -> dict[str, str]:
        return {"Cache-Control": "no-store", "Pragma": "no-cache"}

    def body(self) -> dict[str, object]:
        return {}


REVOKED: Final = RevocationResponse()


class RevocationEndpoint:
    """RFC 7009 §2.1: POST ``token`` (REQUIRED), ``token_type_hint`` (OPTIONAL) by an authenticated client.

    An invalid, expired or unknown token gets 200 (§2.2). A valid token issued to another client is
    refused (§2.1 "verifies whether the token was issued to the client making the revocation
    request"). A revoked ``jti`` is kept until the token's ``exp`` plus the gateways' leeway — the last
    moment any verifier could still accept it — so the list is bounded by the live tokens.
    """

    def __init__(
        self,
        authenticator: ClientAuthenticator,
        verifier: TokenVerifier,
        revocations: RevocationStore,
        *,
        gateway_leeway: float,
    ) -> None:
        self._auth = authenticator
        self._verifier = verifier  # with the gateways' leeway: revoke what a gateway would accept
        self._revocations = revocations
        self._leeway = gateway_leeway

    def handle(
        self, params: FormInput, ctx: ClientAuthContext, now: float
    ) -> RevocationResponse | ErrorResponse:
        try:
            form = Form(params)
            client = self._auth.authenticate(form, ctx, now)
            raw = form.require("token")
            hint = form.get("token_type_hint")
            if hint is not None and hint not in TOKEN_TYPE_HINTS:
                # RFC 7009 §2.2.1 unsupported_token_type.
                raise OAuthError(ErrorCode.UNSUPPORTED_TOKEN_TYPE, "unsupported token_type_hint")
            try:
                vt = self._verifier.verify(raw, now)
            except TokenError:
                return REVOKED  # §2.2: "invalid tokens do not cause an error response"
            jti = vt.claims.get("jti")
            if not isinstance(jti, str):
                return REVOKED
            if vt.claims.get("client_id") != client.client_id:
                raise OAuthError(
                    ErrorCode.UNAUTHORIZED_CLIENT,
                    "the token was not issued to this client",
                    f"{client.client_id} tried to revoke a token of {str(vt.claims.get('client_id'))[:100]}",
                )
            self._revocations.revoke(jti, vt.exp + self._leeway, now)
            return REVOKED
        except OAuthError as exc:
            return exc.response

    def revoked_jtis(self, now: float) -> frozenset[str]:
        """The set gateways and sidecars receive with the trust bundle (ARCHITECTURE §9)."""
        return self._revocations.revoked_jtis(now)

    def __repr__(self) -> str:
        return f"<RevocationEndpoint leeway={self._leeway:g}s>"


__all__ = ["REVOKED", "TOKEN_TYPE_HINTS", "RevocationEndpoint", "RevocationResponse"]
