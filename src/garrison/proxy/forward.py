"""Request and response heads as they cross the gateway: framing re-done, hop-by-hop headers dropped.

The upstream sees the normalized path (ARCHITECTURE §9), the client's sanitized headers, and only the
identity headers the gateway set itself.
"""

from __future__ import annotations

from garrison.http.framing import NO_BODY, Framing
from garrison.http.headers import HOP_BY_HOP
from garrison.pipeline.context import RequestContext
from garrison.pipeline.route import Route
from garrison.pipeline.stage import ResponseHead
from garrison.pipeline.verdicts import Header
from garrison.proxy.responses import render_head, status_line

# RFC 9110 §7.6.1: connection-specific fields are not forwarded (framing is re-done for each hop);
# `server`/`x-powered-by`/… are version banners the client has no use for.
_DROP_FROM_RESPONSE = HOP_BY_HOP | {b"server", b"x-powered-by", b"x-aspnet-version", b"x-aspnetmvc-version"}
_FRAMING_AND_HOST = frozenset({b"host", b"content-length", b"transfer-encoding"})


# The request body's framing as the hygiene stage decided it (one shared constant for no body).
BodyFraming = Framing


def upstream_target(ctx: RequestContext, route: Route) -> bytes:
    path = ctx.path
    if route.strip_prefix and path.startswith(route.strip_prefix):
        path = path[len(route.strip_prefix) :] or "/"
        if not path.startswith("/"):
            path = "/" + path
    target = path.encode("ascii")
    if ctx.query:
        target += b"?" + ctx.query
    return target


def build_upstream_head(ctx: RequestContext, route: Route, framing: BodyFraming) -> bytes:
    """The request line and headers sent upstream. ``ctx.headers`` was sanitized by the hygiene stage."""
    parts = [
        ctx.method.encode("ascii"),
        b" ",
        upstream_target(ctx, route),
        b" HTTP/1.1\r\nhost: ",
        ctx.host_header or ctx.host.encode("ascii"),
        b"\r\n",
    ]
    append = parts.append
    for name, value in ctx.headers:
        if name not in _FRAMING_AND_HOST:
            append(name + b": " + value + b"\r\n")
    for name, value in ctx.upstream_headers:
        append(name + b": " + value + b"\r\n")
    append(ctx.upstream_raw)
    if framing.chunked:
        append(b"transfer-encoding: chunked\r\n")
    elif framing.content_length is not None:
        append(b"content-length: %d\r\n" % framing.content_length)
    append(b"\r\n")
    return b"".join(parts)


def client_response_head(
    ctx: RequestContext, head: ResponseHead, http11: bool, no_body: bool, close: bool
) -> tuple[bytes, bool, bool]:
    """The response head for the client, rendered: the head bytes, whether the body is re-chunked, and
    whether to close after it. Same headers as ``response_headers_for_client``, in one pass."""
    parts = [status_line(head.status)]
    append = parts.append
    has_length = False
    for name, value in head.headers:
        if name in _DROP_FROM_RESPONSE:
            if name == b"connection":  # it may name more fields to drop: the general path
                headers, chunked_out, close = response_headers_for_client(ctx, head, http11, no_body, close)
                return render_head(head.status, headers), chunked_out, close
            continue
        if name == b"content-length":
            has_length = True
        append(name + b": " + value + b"\r\n")
    append(head.raw)
    chunked_out = False
    if not no_body and not has_length:
        if http11:
            append(b"transfer-encoding: chunked\r\n")
            chunked_out = True
        else:
            close = True  # HTTP/1.0 client: the end of the body is the end of the connection
    append(b"x-request-id: " + ctx.request_id.encode() + b"\r\n")
    for name, value in ctx.response_headers:
        append(name + b": " + value + b"\r\n")
    append(b"connection: close\r\n\r\n" if close else b"\r\n")
    return b"".join(parts), chunked_out, close


def response_headers_for_client(
    ctx: RequestContext, head: ResponseHead, http11: bool, no_body: bool, close: bool
) -> tuple[list[Header], bool, bool]:
    """Headers for the client, whether the body is re-chunked, and whether to close after it."""
    connection_named: set[bytes] = set()
    has_length = False
    out: list[Header] = []
    for name, value in head.headers:
        if name == b"connection":
            connection_named.update(t.strip().lower() for t in value.split(b","))
        elif name == b"content-length":
            has_length = True
    for name, value in head.headers:
        if name in _DROP_FROM_RESPONSE or name in connection_named:
            continue
        out.append((name, value))
    chunked_out = False
    if not no_body and not has_length:
        if http11:
            out.append((b"transfer-encoding", b"chunked"))
            chunked_out = True
        else:
            close = True  # HTTP/1.0 client: the end of the body is the end of the connection
    if head.raw:
        out.extend(_parse_lines(head.raw))
    out.append((b"x-request-id", ctx.request_id.encode()))
    out.extend(ctx.response_headers)
    if close:
        out.append((b"connection", b"close"))
    return out, chunked_out, close


def _parse_lines(raw: bytes) -> list[Header]:
    out: list[Header] = []
    for line in raw.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b": ")
            out.append((name, value))
    return out


__all__ = [
    "NO_BODY",
    "BodyFraming",
    "build_upstream_head",
    "client_response_head",
    "response_headers_for_client",
    "upstream_target",
]
