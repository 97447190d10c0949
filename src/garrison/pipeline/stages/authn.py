"""Stage: authenticate. Authenticators are tried in order; the first that claims the credential decides.

``SKIP`` from every authenticator on a protected route is a 401: absence of credentials is never open.
Public routes (``public: true``) skip authentication entirely.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import Stage
from garrison.pipeline.verdicts import SKIP, Deny, Verdict
from garrison.reasons import Reason


class Authenticator(Protocol):
    async def authenticate(self, ctx: RequestContext, allowed_issuers: tuple[str, ...] | None) -> Verdict: ...


class Authn(Stage):
    name: ClassVar[str] = "authn"

    __slots__ = ("allowed_issuers", "authenticators", "public")

    def __init__(
        self,
        authenticators: tuple[Authenticator, ...],
        *,
        public: bool,
        allowed_issuers: tuple[str, ...] | None,
        shadow: bool = False,
    ) -> None:
        super().__init__(shadow=shadow)
        self.authenticators = authenticators
        self.public = public
        self.allowed_issuers = allowed_issuers

    async def on_request(self, ctx: RequestContext) -> Verdict:
        if self.public:
            return SKIP
        for authenticator in self.authenticators:
            verdict = await authenticator.authenticate(ctx, self.allowed_issuers)
            if verdict is SKIP:
                continue
            if isinstance(verdict, Deny):
                ctx.identity = (
                    None  # shadow mode: the request goes on without the identity it failed to prove
                )
                return Deny(verdict.reason, self.name, verdict.rule_id, verdict.headers, verdict.detail)
            return verdict
        return Deny(Reason.AUTHN_REQUIRED, self.name)

    def __repr__(self) -> str:
        what = "public" if self.public else len(self.authenticators)
        return f"<Authn {what}{' shadow' if self.shadow else ''}>"


__all__ = ["Authenticator", "Authn"]
