"""The DLP stage decides what to buffer and rewrites bodies with a consistent head."""

from __future__ import annotations

import json

import pytest

from garrison.dlp import DlpConfig
from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import ResponseHead
from garrison.pipeline.stages.dlp import ResponseDlp

STAGE = ResponseDlp.build(DlpConfig(fields=["password"], max_body_bytes=1000))


def ctx(method: str = "GET") -> RequestContext:
    return RequestContext(
        method=method, raw_target=b"/", headers=[], client_addr="127.0.0.1", request_id="r9", now=0.0
    )


def head(status: int, ct: bytes | None, length: int | None, **extra: bytes) -> ResponseHead:
    h = [(b"content-type", ct)] if ct else []
    if length is not None:
        h.append((b"content-length", str(length).encode()))
    h += [(k.replace("_", "-").encode(), v) for k, v in extra.items()]
    return ResponseHead(status, h)


def test_json_response_is_redacted_and_head_updated() -> None:
    body = b'{"user":"ada","password":"hunter2","etag":1}'
    h = head(200, b"application/json", len(body), etag=b'"x"')
    assert STAGE.body_limit(ctx(), h) == 1000
    out = STAGE.transform_response(ctx(), h, body)
    assert out is not None and json.loads(out)["password"] == "[REDACTED]"
    assert (b"content-length", str(len(out)).encode()) in h.headers
    assert all(k != b"etag" for k, _ in h.headers)


def test_leaky_error_page_is_masked_status_kept() -> None:
    body = b'Traceback (most recent call last):\n  File "/app/x.py", line 3, in f'
    h = head(500, b"text/html", len(body))
    assert STAGE.body_limit(ctx(), h) == 1000
    out = STAGE.transform_response(ctx(), h, body)
    assert out == b'{"error":"upstream_error_masked","request_id":"r9"}'
    assert h.status == 500 and (b"content-type", b"application/json") in h.headers


def test_clean_json_error_is_not_masked() -> None:
    body = b'{"error":"not found"}'
    h = head(404, b"application/json", len(body))
    assert STAGE.transform_response(ctx(), h, body) is None


@pytest.mark.parametrize(
    ("h", "method"),
    [
        pytest.param(head(200, b"text/html", 10), "GET", id="should not buffer a non-JSON success"),
        pytest.param(
            head(200, b"application/json", None, transfer_encoding=b"chunked"),
            "GET",
            id="should leave streaming responses alone unless opted in",
        ),
        pytest.param(
            head(200, b"application/json", 5000), "GET", id="should pass oversized bodies untouched"
        ),
        pytest.param(head(200, b"application/json", 10, content_encoding=b"gzip"), "GET", id="encoded body"),
        pytest.param(head(200, b"application/json", 10), "HEAD", id="HEAD has no body"),
    ],
)
def test_not_buffered(h: ResponseHead, method: str) -> None:
    assert STAGE.body_limit(ctx(method), h) is None


def test_streaming_opt_in_buffers_chunked() -> None:
    stage = ResponseDlp.build(DlpConfig(streaming=True))
    h = head(200, b"application/json", None, transfer_encoding=b"chunked")
    assert stage.body_limit(ctx(), h) == 1_048_576
    out = stage.transform_response(ctx(), h, b'["4111111111111111"]')
    assert out == b'["************1111"]' and all(k != b"transfer-encoding" for k, _ in h.headers)


def test_oversize_is_counted() -> None:
    stage = ResponseDlp.build(DlpConfig(max_body_bytes=10))
    assert (
        stage.transform_response(ctx(), head(200, b"application/json", None), b"[" + b"1," * 20 + b"1]")
        is None
    )
    assert stage.stats["oversize_untouched"] == 1
