"""RFC 7662 token introspection for the access tokens this service issued. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from garrison.errors import TokenError
from garrison.identity.oauth.client_auth import ClientAuthContext, ClientAuthenticator
from garrison.identity.oauth.errors import ErrorResponse, OAuthError
from garrison.identity.oauth.form import Form, FormInput
from garrison.identity.oauth.state import RevocationStore
from garrison.identity.tokens import TokenVerifier

# RFC 7662 §2.2 members copied from an active token (cnf: RFC 8705 §3.2; act: RFC 8693 §4.1).
_COPIED: Final = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti", "cnf", "act")


@dataclass(frozen=True, slots=True)
class IntrospectionResponse:
    """RFC 7662 §2.2 JSON body; status 200. An inactive token is exactly ``{"active": false}``."""

    fields: MappingProxyType[str, Any]
    status: int = 200

    @property
    def active(self) -> bool:
        return bool(self.fields.get("active"))

    @property
    def headers(self) -> dict[str, str]:
        # RFC 7662 §4: responses must not be cached past the token's life; simplest: never.
        return {"Cache-Control": "no-store", "Pragma": "no-cache"}

    def body(self) -> dict[str, Any]:
        return dict(self.fields)

    def __repr__(self) -> str:
        return f"<IntrospectionResponse active={self.active} jti={self.fields.get('jti')!r}>"


INACTIVE: Final = IntrospectionResponse(MappingProxyType({"active": False}))


class IntrospectionEndpoint:
    """RFC 7662 §2.1/§2.2: POST ``token`` (REQUIRED), ``token_type_hint`` (OPTIONAL, ignored).

    The caller must be an authenticated client (401 ``invalid_client`` otherwise). An expired,
    revoked, unknown, badly signed or foreign token is inactive, and the answer says nothing more
    ("SHOULD NOT include any additional information about an inactive token, including why").
    """

    def __init__(
        self, authenticator: ClientAuthenticator, verifier: TokenVerifier, revocations: RevocationStore
    ) -> None:
        self._auth = authenticator
        self._verifier = verifier
        self._revocations = revocations

    def handle(
        self, params: FormInput, ctx: ClientAuthContext, now: float
    ) -> IntrospectionResponse | ErrorResponse:
        try:
            form = Form(params)
            self._auth.authenticate(form, ctx, now)
            raw = form.require("token")
        except OAuthError as exc:
            return exc.response
        return self.introspect(raw, now)

    def introspect(self, raw: str, now: float) -> IntrospectionResponse:
        try:
            vt = self._verifier.verify(raw, now)
        except TokenError:
            return INACTIVE
        claims = vt.claims
        jti = claims.get("jti")
        if not isinstance(jti, str) or self._revocations.is_revoked(jti, now):
            return INACTIVE
        out: dict[str, Any] = {"active": True}
        for name in _COPIED:
            if name in claims:
                out[name] = claims[name]
        out["token_type"] = "Bearer"  # noqa: S105 RFC 7662 §2.2: as in RFC 6749 §5.1
        return IntrospectionResponse(MappingProxyType(out))

    def __repr__(self) -> str:
        return f"<IntrospectionEndpoint {self._verifier!r}>"


__all__ = ["INACTIVE", "IntrospectionEndpoint", "IntrospectionResponse"]
