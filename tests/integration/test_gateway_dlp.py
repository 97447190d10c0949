"""Response DLP in the route chain, over real sockets: card numbers redacted only when Luhn-valid,
named fields at any depth, non-JSON and oversized bodies untouched, leaking error pages masked."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from support.gateway import GatewayThread, Signer, base_config

CARD = "4111111111111111"  # Luhn-valid (a well-known test number)
NOT_A_CARD = "4111111111111112"  # same length, fails the Luhn check
TRACE = b'Traceback (most recent call last):\n  File "app.py", line 12, in handler\nKeyError: db_password\n'

BODIES: dict[str, tuple[int, bytes, bytes]] = {
    "/cards": (200, b"application/json", json.dumps({"card": CARD, "order": NOT_A_CARD}).encode()),
    "/nested": (
        200,
        b"application/json",
        json.dumps(
            {"user": {"profile": {"SSN": "123-45-6789", "name": "ann"}}, "items": [{"ssn": "x"}]}
        ).encode(),
    ),
    "/text": (200, b"text/plain", f"card {CARD}\n".encode()),
    "/big": (200, b"application/json", json.dumps({"card": CARD, "pad": "p" * 5000}).encode()),
    "/leak404": (404, b"text/html", b"<html><pre>" + TRACE + b"</pre></html>"),
    "/leak500": (500, b"text/plain", TRACE),
    "/clean404": (404, b"application/json", b'{"error":"no such order"}'),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("/", 2)[-1]
        status, ctype, body = BODIES.get("/" + path, (200, b"application/json", b"{}"))
        if path in ("chunked", "bigchunked"):
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            payload = json.dumps(
                {"card": CARD, "pad": "p" * (20_000 if path == "bigchunked" else 0)}
            ).encode()
            for i in range(0, len(payload), 3000):
                part = payload[i : i + 3000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_response(status)
        self.send_header("content-type", ctype.decode())
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


ROUTES = """
  - name: dlp
    path: /dlp/**
    methods: [GET]
    upstream: "http://127.0.0.1:{port}"
    public: true
    mask_upstream_errors: false
    dlp: {{fields: [ssn], max_body_bytes: 4096}}
  - name: dlp-stream
    path: /stream/**
    methods: [GET]
    upstream: "http://127.0.0.1:{port}"
    public: true
    dlp: {{streaming: true, max_body_bytes: 8192}}
  - name: plain
    path: /plain/**
    methods: [GET]
    upstream: "http://127.0.0.1:{port}"
    public: true
    mask_upstream_errors: false
"""


@pytest.fixture
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def gw(tmp_path: Path, signer: Signer, upstream: int) -> Iterator[GatewayThread]:
    def cfg(port: int) -> str:
        routes = ROUTES.format(port=upstream).lstrip("\n")
        return base_config(signer, port).replace("routes:\n", "routes:\n" + routes, 1)

    g = GatewayThread(tmp_path, cfg).start()
    try:
        yield g
    finally:
        g.stop()


def test_card_redacted_only_when_luhn_valid(gw: GatewayThread) -> None:
    r = httpx.get(gw.url + "/dlp/cards")
    assert r.status_code == 200
    body = r.json()
    assert CARD not in r.text and body["card"].endswith("1111") and body["card"] != CARD
    assert body["order"] == NOT_A_CARD
    assert int(r.headers["content-length"]) == len(r.content)


def test_nested_field_redacted_at_any_depth(gw: GatewayThread) -> None:
    body = httpx.get(gw.url + "/dlp/nested").json()
    assert body["user"]["profile"] == {"SSN": "[REDACTED]", "name": "ann"}
    assert body["items"] == [{"ssn": "[REDACTED]"}]


def test_non_json_body_untouched(gw: GatewayThread) -> None:
    r = httpx.get(gw.url + "/dlp/text")
    assert r.status_code == 200 and r.text == f"card {CARD}\n"


def test_body_over_the_limit_is_sent_untouched(gw: GatewayThread) -> None:
    r = httpx.get(gw.url + "/dlp/big")
    assert r.status_code == 200 and r.content == BODIES["/big"][2]


@pytest.mark.parametrize("path", ["/dlp/leak404", "/dlp/leak500"])
def test_leaking_error_page_is_masked_and_keeps_its_status(gw: GatewayThread, path: str) -> None:
    r = httpx.get(gw.url + path)
    assert r.status_code == BODIES[path.removeprefix("/dlp")][0]
    assert r.json() == {"error": "upstream_error_masked", "request_id": r.headers["x-request-id"]}
    assert b"Traceback" not in r.content
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-content-type-options"] == "nosniff"  # security headers still applied


def test_clean_error_page_untouched(gw: GatewayThread) -> None:
    r = httpx.get(gw.url + "/dlp/clean404")
    assert r.status_code == 404 and r.json() == {"error": "no such order"}


def test_chunked_json_is_redacted_only_with_streaming(gw: GatewayThread) -> None:
    streamed = httpx.get(gw.url + "/stream/chunked")
    assert streamed.status_code == 200 and CARD not in streamed.text
    assert streamed.json()["card"].endswith("1111")
    untouched = httpx.get(gw.url + "/dlp/chunked")
    assert untouched.json()["card"] == CARD


def test_chunked_body_passing_the_limit_streams_on_untouched(gw: GatewayThread) -> None:
    r = httpx.get(gw.url + "/stream/bigchunked")
    assert r.status_code == 200
    body = r.json()
    assert body["card"] == CARD and len(body["pad"]) == 20_000


def test_route_without_dlp_is_untouched(gw: GatewayThread) -> None:
    assert httpx.get(gw.url + "/plain/cards").json()["card"] == CARD
    assert b"Traceback" in httpx.get(gw.url + "/plain/leak404").content


def test_keep_alive_across_dlp_responses(gw: GatewayThread) -> None:
    with httpx.Client(base_url=gw.url) as client:
        for _ in range(3):
            assert CARD not in client.get("/dlp/cards").text
            assert client.get("/dlp/big").status_code == 200
            assert client.get("/dlp/leak404").status_code == 404
