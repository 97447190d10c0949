"""Stage (response side): security headers on every proxied response; no server banner."""

from __future__ import annotations

from typing import ClassVar

from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import ResponseHead, Stage
from garrison.pipeline.verdicts import CONTINUE, Verdict
from garrison.proxy.responses import BASE_SECURITY_HEADERS, HSTS, SECURITY_BLOCK, SECURITY_BLOCK_TLS

_ALL_NAMES = frozenset(name for name, _ in (*BASE_SECURITY_HEADERS, HSTS))


class SecurityHeaders(Stage):
    """Adds HSTS (on TLS), nosniff, Referrer-Policy and frame-ancestors unless the upstream set them."""

    name: ClassVar[str] = "response"
    sync: ClassVar[bool] = True
    enforcing: ClassVar[bool] = False

    __slots__ = ()

    def check(self, ctx: RequestContext) -> Verdict:
        return CONTINUE

    def on_response(self, ctx: RequestContext, head: ResponseHead) -> None:
        headers = head.headers
        for name, _ in headers:
            if name in _ALL_NAMES:
                break
        else:  # the usual case: the upstream set none of them; add the block rendered at load
            head.raw += SECURITY_BLOCK_TLS if ctx.tls else SECURITY_BLOCK
            return
        present = {name for name, _ in headers}
        for name, value in BASE_SECURITY_HEADERS:
            if name not in present:
                headers.append((name, value))
        if ctx.tls and HSTS[0] not in present:
            headers.append(HSTS)


__all__ = ["SecurityHeaders"]
