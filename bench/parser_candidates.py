"""Server-design candidates: the CPU cost of HTTP/1.1 parsing per proxied request, httptools vs h11.

A proxied request is parsed twice: the client's request and the upstream's response. This measures
both with each parser on the same bytes, in one run, and prints µs per request and the ratio.
Run: .venv/bin/python bench/parser_candidates.py
"""

from __future__ import annotations

import timeit

import h11
import httptools

REQUEST = (
    b"GET /api/v1/items?limit=10 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: wrk\r\n"
    b"Accept: */*\r\nAuthorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\r\n"
    b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\n"
    b'date: Mon, 23 Nov 2026 12:00:00 GMT\r\n\r\n{"ok": true}\n'
)


class _Sink:
    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self.body = body


def httptools_once() -> None:
    s = _Sink()
    p = httptools.HttpRequestParser(s)
    p.feed_data(REQUEST)
    r = _Sink()
    q = httptools.HttpResponseParser(r)
    q.feed_data(RESPONSE)


def h11_once() -> None:
    server = h11.Connection(h11.SERVER)
    server.receive_data(REQUEST)
    server.next_event()
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(RESPONSE)
    client.next_event()
    client.next_event()
    client.next_event()


def best_us(fn: object, n: int = 20_000) -> float:
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6  # type: ignore[arg-type]


if __name__ == "__main__":
    a = best_us(httptools_once)
    b = best_us(h11_once)
    print(f"httptools (llhttp): {a:6.2f} µs per proxied request (request + response parse)")
    print(f"h11 (pure Python):  {b:6.2f} µs per proxied request (request + response parse)")
    print(f"h11 / httptools:    {b / a:6.1f}x")
