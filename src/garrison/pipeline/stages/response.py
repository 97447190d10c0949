"""Stage (response side): security headers on every proxied response; no server banner."""

from __future__ import annotations

from typing import ClassVar

from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import ResponseHead, Stage
from garrison.pipeline.verdicts import CONTINUE, Verdict
from garrison.proxy.responses import BASE_SECURITY_HEADERS, HSTS


class SecurityHeaders(Stage):
    """Adds HSTS (on TLS), nosniff, Referrer-Policy and frame-ancestors unless the upstream set them."""

    name: ClassVar[str] = "response"
    sync: ClassVar[bool] = True
    enforcing: ClassVar[bool] = False

    __slots__ = ()

    def check(self, ctx: RequestContext) -> Verdict:
        return CONTINUE

    def on_response(self, ctx: RequestContext, head: ResponseHead) -> None:
        present = {name for name, _ in head.headers}
        for name, value in BASE_SECURITY_HEADERS:
            if name not in present:
                head.headers.append((name, value))
        if ctx.tls and HSTS[0] not in present:
            head.headers.append(HSTS)


__all__ = ["SecurityHeaders"]
