"""What every grant at the token endpoint shares (RFC 6749 §3.2, §5): parse, dispatch, authenticate.

A grant subclass implements ``issue``; ``handle`` turns any ``OAuthError`` into its response value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import ClassVar

from garrison.identity.oauth.access_tokens import TokenResponse
from garrison.identity.oauth.client_auth import AuthenticatedClient, ClientAuthContext, ClientAuthenticator
from garrison.identity.oauth.errors import ErrorCode, ErrorResponse, OAuthError
from garrison.identity.oauth.form import Form, FormInput


class TokenGrant(ABC):
    """One ``grant_type`` at the token endpoint."""

    grant_type: ClassVar[str]

    def __init__(self, authenticator: ClientAuthenticator) -> None:
        self._auth = authenticator

    def handle(
        self, params: FormInput | Form, ctx: ClientAuthContext, now: float
    ) -> TokenResponse | ErrorResponse:
        try:
            form = params if isinstance(params, Form) else Form(params)
            if form.get("grant_type") != self.grant_type:
                raise OAuthError(ErrorCode.UNSUPPORTED_GRANT_TYPE, "unsupported grant_type")
            return self.issue(form, self._auth.authenticate(form, ctx, now), now)
        except OAuthError as exc:
            return exc.response

    def check_allowed(self, client: AuthenticatedClient) -> None:
        # RFC 6749 §5.2 unauthorized_client: "not authorized to use this authorization grant type".
        if self.grant_type not in client.registration.grant_types:
            raise OAuthError(
                ErrorCode.UNAUTHORIZED_CLIENT,
                "client not allowed to use this grant type",
                f"{client.client_id} may not use {self.grant_type}",
            )

    @abstractmethod
    def issue(self, form: Form, client: AuthenticatedClient, now: float) -> TokenResponse:
        """Validate the grant's own parameters and mint the token; raise ``OAuthError`` otherwise."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.grant_type}>"


class TokenEndpoint:
    """RFC 6749 §3.2: dispatches on ``grant_type`` to the registered grant classes."""

    def __init__(self, grants: Iterable[TokenGrant]) -> None:
        self._grants = {g.grant_type: g for g in grants}

    @property
    def grant_types(self) -> tuple[str, ...]:
        return tuple(self._grants)

    def handle(self, params: FormInput, ctx: ClientAuthContext, now: float) -> TokenResponse | ErrorResponse:
        try:
            form = Form(params)
        except OAuthError as exc:
            return exc.response
        gt = form.get("grant_type")
        if gt is None:
            return ErrorResponse(ErrorCode.INVALID_REQUEST, "missing parameter grant_type")
        grant = self._grants.get(gt)
        if grant is None:
            return ErrorResponse(ErrorCode.UNSUPPORTED_GRANT_TYPE, "unsupported grant_type")
        return grant.handle(form, ctx, now)

    def __repr__(self) -> str:
        return f"<TokenEndpoint {sorted(self._grants)}>"


__all__ = ["TokenEndpoint", "TokenGrant"]
