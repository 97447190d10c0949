"""A tiny example service for the demo and tests: answers JSON describing the request it received.

It shows what an app behind garrison sees: the normalized path and the identity headers the gateway
set. Not for production use.
"""

from __future__ import annotations

import asyncio
import json
from typing import cast


class _EchoProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception:
            if self.transport is not None:
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        assert self.transport is not None
        path = self.url.decode("latin-1")
        method = self.parser.get_method().decode()
        if path.startswith("/microservice1/crash"):
            status = 500
            payload = b'Traceback (most recent call last):\n  File "app.py", line 1\nKeyError: db_password\n'
            ctype = b"text/plain"
        else:
            status = 200
            payload = json.dumps(
                {
                    "service": "microservice1",
                    "method": method,
                    "path": path,
                    "headers": {k: v for k, v in self.headers if k.startswith("x-") or k == "traceparent"},
                    "body_bytes": len(self.body),
                },
                sort_keys=True,
            ).encode()
            ctype = b"application/json"
        head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nserver: demo-app/1.0\r\n\r\n" % (
            status,
            b"OK" if status == 200 else b"Internal Server Error",
            ctype,
            len(payload),
        )
        self.transport.write(head + payload)
        if not self.parser.should_keep_alive():
            self.transport.close()
        self._reset()


async def start_echo_upstream(host: str = "127.0.0.1", port: int = 0) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(_EchoProtocol, host, port)


__all__ = ["start_echo_upstream"]
