"""Bytes the gateway writes itself: error bodies, status lines, header blocks. Precomputed where fixed."""

from __future__ import annotations

from http import HTTPStatus

from garrison.pipeline.verdicts import Header
from garrison.reasons import Reason

_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")
    return line


# Every response the gateway itself produces carries these (STYLE §13: precomputed bytes).
BASE_SECURITY_HEADERS: tuple[Header, ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
)
HSTS: Header = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
CACHE_NO_STORE: Header = (b"cache-control", b"no-store")


def error_body(reason: Reason | str, request_id: str) -> bytes:
    # Both values come from fixed alphabets (Reason codes, hex request ids): no escaping needed.
    return b'{"error":"%s","request_id":"%s"}' % (str(reason).encode(), request_id.encode())


def render_lines(headers: list[Header] | tuple[Header, ...]) -> bytes:
    """``name: value\r\n`` for each header (for blocks rendered once, at load or per identity)."""
    return b"".join([name + b": " + value + b"\r\n" for name, value in headers])


SECURITY_BLOCK = render_lines(BASE_SECURITY_HEADERS)
SECURITY_BLOCK_TLS = SECURITY_BLOCK + render_lines((HSTS,))


def render_head(status: int, headers: list[Header] | tuple[Header, ...]) -> bytes:
    parts = [status_line(status)]
    for name, value in headers:
        parts.append(name + b": " + value + b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def error_response(
    status: int,
    reason: Reason | str,
    request_id: str,
    *,
    extra: tuple[Header, ...] | list[Header] = (),
    close: bool = False,
    tls: bool = False,
) -> bytes:
    body = error_body(reason, request_id)
    headers: list[Header] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        CACHE_NO_STORE,
        *BASE_SECURITY_HEADERS,
        *extra,
    ]
    if tls:
        headers.append(HSTS)
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="garrison"'))
    if close:
        headers.append((b"connection", b"close"))
    return render_head(status, headers) + body


__all__ = [
    "BASE_SECURITY_HEADERS",
    "CACHE_NO_STORE",
    "HSTS",
    "SECURITY_BLOCK",
    "SECURITY_BLOCK_TLS",
    "error_body",
    "error_response",
    "render_head",
    "render_lines",
    "status_line",
]
