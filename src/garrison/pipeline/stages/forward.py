"""Stage: what the upstream learns about the request — only from headers the gateway sets itself.

Runs last on the request side. Inbound copies of these headers were stripped by the hygiene stage.
"""

from __future__ import annotations

import random
from typing import ClassVar

from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import Stage
from garrison.pipeline.verdicts import CONTINUE, Verdict

# The documented identity headers (docs/configuration.md). Only the gateway sets them.
H_PRINCIPAL = b"x-garrison-principal"
H_SUBJECT = b"x-garrison-subject"
H_ISSUER = b"x-garrison-issuer"
H_SCOPES = b"x-garrison-scopes"
H_AUTH_METHOD = b"x-garrison-auth-method"
H_REQUEST_ID = b"x-request-id"
H_TRACEPARENT = b"traceparent"
_rand = random.Random().getrandbits  # seeded from os.urandom at import; fast, not for secrets


def _valid_traceparent(v: bytes) -> bool:
    # W3C Trace Context §3.2: version "00", 32-hex trace-id, 16-hex parent-id, 2-hex flags; not all-zero ids.
    if len(v) != 55 or v[2:3] != b"-" or v[35:36] != b"-" or v[52:53] != b"-" or v[:2] == b"ff":
        return False
    try:
        int(v[:2], 16), int(v[3:35], 16), int(v[36:52], 16), int(v[53:], 16)
    except ValueError:
        return False
    return v[3:35] != b"0" * 32 and v[36:52] != b"0" * 16 and v == v.lower()


class Forward(Stage):
    name: ClassVar[str] = "forward"
    enforcing: ClassVar[bool] = False

    __slots__ = ()

    async def on_request(self, ctx: RequestContext) -> Verdict:
        add = ctx.upstream_headers.append
        ident = ctx.identity
        if ident is not None:
            add((H_PRINCIPAL, ident.principal.encode("utf-8", "replace")))
            add((H_SUBJECT, ident.subject.encode("utf-8", "replace")))
            add((H_ISSUER, ident.issuer.encode("utf-8", "replace")))
            add((H_AUTH_METHOD, ident.method.encode()))
            if ident.scopes:
                add((H_SCOPES, " ".join(sorted(ident.scopes)).encode("utf-8", "replace")))
        add((H_REQUEST_ID, ctx.request_id.encode()))
        # W3C traceparent: keep a valid incoming one (new parent-id: we are a hop), else start a trace.
        incoming = ctx.header(b"traceparent")
        # Trace and span ids must be unique, not secret (W3C Trace Context §3.2.2.3): no syscall here.
        span = b"%016x" % (_rand(64) or 1)
        if incoming is not None and _valid_traceparent(incoming):
            tp = incoming[:36] + span + incoming[52:]
        else:
            tp = b"00-%032x-%s-01" % (_rand(128) or 1, span)
        ctx.traceparent = tp
        add((H_TRACEPARENT, tp))
        xff = ctx.header(b"x-forwarded-for")  # present only if a trusted proxy sent it (hygiene)
        peer = ctx.client_addr.encode()
        add((b"x-forwarded-for", xff + b", " + peer if xff else peer))
        add((b"x-forwarded-proto", b"https" if ctx.tls else b"http"))
        return CONTINUE


__all__ = ["H_AUTH_METHOD", "H_ISSUER", "H_PRINCIPAL", "H_SCOPES", "H_SUBJECT", "Forward"]
