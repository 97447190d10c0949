"""Ambiguous framing is refused with 400 and the connection is closed (RFC 9112 §6.1, §6.3, §7.1)."""

from __future__ import annotations

import pytest

from support.gateway import GatewayThread
from support.raw import count_responses, exchange, status_of

HEAD = b"POST /public/x HTTP/1.1\r\nHost: t\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(
            HEAD
            + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n",
            id="cl-and-te-both-present",
        ),
        pytest.param(
            HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", id="te-then-cl"
        ),
        pytest.param(
            HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", id="two-different-content-lengths"
        ),
        pytest.param(
            HEAD + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", id="two-equal-content-lengths"
        ),
        pytest.param(HEAD + b"Content-Length: 5, 5\r\n\r\nhello", id="content-length-list"),
        pytest.param(HEAD + b"Content-Length: +5\r\n\r\nhello", id="signed-content-length"),
        pytest.param(HEAD + b"Content-Length: 0x5\r\n\r\nhello", id="hex-content-length"),
        pytest.param(
            HEAD + b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n", id="bad-chunk-size"
        ),
        pytest.param(
            HEAD + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            id="chunk-size-overflow",
        ),
        pytest.param(HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", id="te-gzip-chunked"),
        pytest.param(HEAD + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", id="te-unknown-coding"),
        pytest.param(
            HEAD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", id="te-twice"
        ),
        pytest.param(HEAD + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", id="space-before-colon"),
        pytest.param(HEAD + b"X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n", id="obs-fold"),
        pytest.param(b"GET /public/x HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", id="duplicate-host"),
        pytest.param(b"GET /public/x HTTP/1.1\r\n\r\n", id="missing-host"),
        pytest.param(b"GET /public/x HTTP/1.1\nHost: t\n\n", id="bare-lf"),
        pytest.param(b"GET /public/x HTTP/2.0\r\nHost: t\r\n\r\n", id="http2-version-on-h1"),
    ],
)
def test_ambiguous_framing_is_refused_and_connection_closed(
    gateway: GatewayThread, request_bytes: bytes
) -> None:
    resp, closed = exchange(gateway.port, request_bytes)
    assert 400 <= status_of(resp) < 600, resp[:200]
    assert status_of(resp) != 200
    assert count_responses(resp) == 1  # the smuggled second request was never answered
    assert closed


def test_chunked_body_is_forwarded_when_well_formed(gateway: GatewayThread) -> None:
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    resp, _ = exchange(gateway.port, HEAD + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body)
    assert status_of(resp) == 200
    assert b'"body_bytes": 11' in resp


def test_transfer_encoding_in_http10_is_refused(gateway: GatewayThread) -> None:
    resp, closed = exchange(
        gateway.port, b"POST /public/x HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    assert status_of(resp) == 400 and closed


def test_absolute_form_host_must_match_host_header(gateway: GatewayThread) -> None:
    resp, _ = exchange(
        gateway.port, b"GET http://evil.example/public/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert status_of(resp) == 400


def test_trailers_are_not_forwarded_as_headers(gateway: GatewayThread) -> None:
    body = b"5\r\nhello\r\n0\r\nX-Garrison-Principal: spiffe://test.local/svc/admin\r\n\r\n"
    resp, _ = exchange(gateway.port, HEAD + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body)
    assert status_of(resp) == 200
    assert b"x-garrison-principal" not in resp
