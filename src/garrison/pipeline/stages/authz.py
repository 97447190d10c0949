"""Stage: authorize through the compiled policy index. Deny by default; explicit deny beats allow."""

from __future__ import annotations

from typing import ClassVar

from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import Stage
from garrison.pipeline.verdicts import CONTINUE, Deny, Verdict
from garrison.policy.index import PolicyIndex


class Authz(Stage):
    name: ClassVar[str] = "authz"
    sync: ClassVar[bool] = True

    __slots__ = ("index", "public", "route_name")

    def __init__(self, index: PolicyIndex, *, route_name: str, public: bool, shadow: bool = False) -> None:
        super().__init__(shadow=shadow)
        self.index = index
        self.route_name = route_name
        self.public = public

    def check(self, ctx: RequestContext) -> Verdict:
        d = self.index.decide(
            route=self.route_name,
            public=self.public,
            method=ctx.method,
            path=ctx.path,
            identity=ctx.identity,
            client_ip=ctx.client_ip,
        )
        if d.allowed:
            ctx.rule_id = d.rule_id
            return CONTINUE
        return Deny(d.reason, self.name, d.rule_id)


__all__ = ["Authz"]
