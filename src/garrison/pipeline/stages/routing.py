"""Stage: find the one route for host + path + method through the indexed router."""

from __future__ import annotations

from typing import ClassVar

from garrison.pipeline.context import RequestContext
from garrison.pipeline.route import Route
from garrison.pipeline.router import Router
from garrison.pipeline.stage import Stage
from garrison.pipeline.verdicts import CONTINUE, Deny, Verdict


class Routing(Stage):
    name: ClassVar[str] = "router"
    sync: ClassVar[bool] = True
    enforcing: ClassVar[bool] = False

    __slots__ = ("router",)

    def __init__(self, router: Router) -> None:
        super().__init__()
        self.router = router

    def check(self, ctx: RequestContext) -> Verdict:
        found = self.router.match(ctx.host, ctx.path, ctx.method)
        if isinstance(found, Route):
            ctx.route = found
            return CONTINUE
        return Deny(found, self.name)


__all__ = ["Routing"]
