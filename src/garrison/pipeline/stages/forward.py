"""Stage: what the upstream learns about the request — only from headers the gateway sets itself.

Runs last on the request side. Inbound copies of these headers were stripped by the hygiene stage.
"""

from __future__ import annotations

import random
import re
from typing import ClassVar

from garrison.pipeline.context import Identity, RequestContext
from garrison.pipeline.stage import Stage
from garrison.pipeline.verdicts import CONTINUE, Header, Verdict
from garrison.proxy.responses import render_lines

# The documented identity headers (docs/configuration.md). Only the gateway sets them.
H_PRINCIPAL = b"x-garrison-principal"
H_SUBJECT = b"x-garrison-subject"
H_ISSUER = b"x-garrison-issuer"
H_SCOPES = b"x-garrison-scopes"
H_AUTH_METHOD = b"x-garrison-auth-method"
H_REQUEST_ID = b"x-request-id"
H_TRACEPARENT = b"traceparent"
_rand = random.Random().getrandbits  # noqa: S311 - ids must be unique, not secret (seeded from os.urandom)


def _valid_traceparent(v: bytes) -> bool:
    # W3C Trace Context §3.2: version "00", 32-hex trace-id, 16-hex parent-id, 2-hex flags; not all-zero ids.
    if len(v) != 55 or v[2:3] != b"-" or v[35:36] != b"-" or v[52:53] != b"-" or v[:2] == b"ff":
        return False
    try:
        int(v[:2], 16), int(v[3:35], 16), int(v[36:52], 16), int(v[53:], 16)
    except ValueError:
        return False
    return v[3:35] != b"0" * 32 and v[36:52] != b"0" * 16 and v == v.lower()


_IDENTITY_CACHE_MAX = 4096
# Control characters never go into a header value (header splitting): escaped as %XX. A verified
# token's claims are the issuer's words, but one bad issuer must not be able to add headers upstream.
_CTL_ESCAPE = {c: f"%{c:02X}" for c in (*range(0x20), 0x7F)}
_CTL = re.compile("[\x00-\x1f\x7f]")


def _value(text: str) -> bytes:
    if _CTL.search(text) is not None:
        text = text.translate(_CTL_ESCAPE)
    return text.encode("utf-8", "replace")


def identity_headers(ident: Identity) -> tuple[Header, ...]:
    """The identity headers the upstream gets for ``ident`` (and only from the gateway)."""
    out: list[Header] = [
        (H_PRINCIPAL, _value(ident.principal)),
        (H_SUBJECT, _value(ident.subject)),
        (H_ISSUER, _value(ident.issuer)),
        (H_AUTH_METHOD, _value(ident.method)),
    ]
    if ident.scopes:
        out.append((H_SCOPES, _value(" ".join(sorted(ident.scopes)))))
    return tuple(out)


class Forward(Stage):
    name: ClassVar[str] = "forward"
    enforcing: ClassVar[bool] = False
    sync: ClassVar[bool] = True

    # Identity headers, rendered, by id(identity): a verified token's Identity is one object, reused
    # from the token cache, so its headers are built once. An entry keeps the object itself and is
    # used only when it *is* the request's identity (an id can be reused once an object is gone).
    __slots__ = ("_by_identity",)

    def __init__(self) -> None:
        super().__init__()
        self._by_identity: dict[int, tuple[Identity, bytes]] = {}

    def _block_of(self, ident: Identity) -> bytes:
        hit = self._by_identity.get(id(ident))
        if hit is not None and hit[0] is ident:
            return hit[1]
        block = render_lines(identity_headers(ident))
        if len(self._by_identity) >= _IDENTITY_CACHE_MAX:
            self._by_identity.clear()
        self._by_identity[id(ident)] = (ident, block)
        return block

    def check(self, ctx: RequestContext) -> Verdict:
        ident = ctx.identity
        # W3C traceparent: keep a valid incoming one (new parent-id: we are a hop), else start a trace.
        # Trace and span ids must be unique, not secret (W3C Trace Context §3.2.2.3): no syscall here.
        incoming = xff = None
        for name, value in ctx.headers:  # one pass for both (first value of each)
            if name == b"traceparent":
                if incoming is None:
                    incoming = value
            elif name == b"x-forwarded-for" and xff is None:
                xff = value  # present only if a trusted proxy sent it (hygiene)
        if incoming is not None and _valid_traceparent(incoming):
            tp = b"%s%016x%s" % (incoming[:36], _rand(64) or 1, incoming[52:])
        else:
            tp = b"00-%032x-%016x-01" % (_rand(128) or 1, _rand(64) or 1)
        ctx.traceparent = tp
        peer = ctx.client_addr.encode()
        ctx.upstream_raw = _FORWARD_LINES % (
            b"" if ident is None else self._block_of(ident),
            ctx.request_id.encode(),
            tp,
            xff + b", " + peer if xff else peer,
            b"https" if ctx.tls else b"http",
        )
        return CONTINUE


# identity block, then x-request-id, traceparent, x-forwarded-for, x-forwarded-proto
_FORWARD_LINES = (
    b"%s" + H_REQUEST_ID + b": %s\r\n" + H_TRACEPARENT + b": %s\r\nx-forwarded-for: %s\r\n"
    b"x-forwarded-proto: %s\r\n"
)

__all__ = ["H_AUTH_METHOD", "H_ISSUER", "H_PRINCIPAL", "H_SCOPES", "H_SUBJECT", "Forward", "identity_headers"]
