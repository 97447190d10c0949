"""A fast, minimal HTTP/1.1 upstream for the gateway benchmark.

Answers every request with the same small 200 response (precomputed bytes), keeps
connections alive (closes only when the client asks, or for HTTP/1.0 without keep-alive),
handles pipelining and request bodies via httptools. One process, one thread, uvloop.

It exists so that the upstream is not what a benchmark measures: see bench/README.md for its
measured cost per request next to HAProxy's `http-request return` (the other upstream
gateway_bench.py can use).

    python bench/upstream.py --port 18080 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import cast

import httptools

BODY = b'{"ok":true}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    b"\r\n" + BODY
)
RESPONSE_CLOSE = RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class UpstreamProtocol(asyncio.Protocol):
    """One connection. The parser calls on_message_complete once per request."""

    __slots__ = ("parser", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail()
        except httptools.HttpParserError:
            self._fail()

    def on_message_complete(self) -> None:
        t = self.transport
        if t is None:
            return
        if self.parser.should_keep_alive():
            t.write(RESPONSE)
        else:
            t.write(RESPONSE_CLOSE)
            t.close()
            self.transport = None

    def _fail(self) -> None:
        if self.transport is not None:
            self.transport.write(BAD_REQUEST)
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    server = await loop.create_server(UpstreamProtocol, host, port, backlog=4096, reuse_address=True)
    print(f"upstream listening on http://{host}:{port}", flush=True)
    try:
        await stop
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # still works, just slower
        print("uvloop not installed; using the default asyncio loop", file=sys.stderr)
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
