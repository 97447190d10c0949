"""The admin listener: ``GET /metrics``, ``/healthz``, ``/readyz`` on an address apart from traffic.

An asyncio server on the gateway's loop parses the tiny admin requests (tens of µs), but the scrape
itself runs in a one-thread executor: ``generate_latest`` costs ~1 ms for a handful of routes and
~8 ms for 50 (almost all in prometheus_client's text formatting), which would stall every request
in flight if run on the loop. Off the loop, the loop waits at most one GIL switch interval.
prometheus_client's own threaded server would do the same work in a thread but parse HTTP there with
``http.server`` and could not be stopped with the loop; this one is closed by ``AdminServer.close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

HEAD_TIMEOUT: Final = 5.0  # seconds to receive a request head
MAX_HEAD: Final = 8192
MAX_DISCARDED_BODY: Final = 65_536
MAX_CONNECTIONS: Final = 64


def _reply(
    status: int, reason: str, body: bytes, ctype: str = "text/plain; charset=utf-8", extra: str = ""
) -> bytes:
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        f"Cache-Control: no-store\r\nConnection: close\r\n{extra}\r\n"
    ).encode("ascii") + body


_OK: Final = _reply(200, "OK", b"ok\n")
_NOT_READY: Final = _reply(503, "Service Unavailable", b"not ready\n")
_NOT_FOUND: Final = _reply(404, "Not Found", b"not found\n")
_NOT_ALLOWED: Final = _reply(405, "Method Not Allowed", b"method not allowed\n", extra="Allow: GET\r\n")
_NOT_ALLOWED_HEAD: Final = _NOT_ALLOWED[: _NOT_ALLOWED.index(b"\r\n\r\n") + 4]  # RFC 9110 §9.3.2: no body
_BAD_REQUEST: Final = _reply(400, "Bad Request", b"bad request\n")
_ERROR: Final = _reply(500, "Internal Server Error", b"internal error\n")


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 host in brackets) to (host, port); ``localhost`` means 127.0.0.1."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address must be HOST:PORT, got {address!r}")
    host = host.strip("[]")
    return ("127.0.0.1" if host == "localhost" else host), int(port)


class AdminServer:
    """A running admin listener. ``port`` is the bound port (useful with port 0)."""

    def __init__(self, registry: CollectorRegistry, ready: Callable[[], bool]) -> None:
        self._registry = registry
        self._ready = ready
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="garrison-scrape")
        self.host = ""
        self.port = 0

    async def _start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._handle, host, port, limit=MAX_HEAD, reuse_address=True
        )
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        """Stop listening, cut open admin connections, stop the scrape thread."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._tasks) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._tasks.add(task)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            writer.write(await self._respond(head, reader))
            await writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, head: bytes, reader: asyncio.StreamReader) -> bytes:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _BAD_REQUEST
        method, target = parts[0], parts[1]
        if method != b"GET":
            await _discard_body(lines, reader)  # so closing does not reset the reply away
            return _NOT_ALLOWED_HEAD if method == b"HEAD" else _NOT_ALLOWED
        path = target.split(b"?", 1)[0]
        if path == b"/metrics":
            loop = asyncio.get_running_loop()
            try:
                body = await loop.run_in_executor(self._executor, generate_latest, self._registry)
            except Exception:
                return _ERROR
            return _reply(200, "OK", body, CONTENT_TYPE_LATEST)
        if path == b"/healthz":
            return _OK
        if path == b"/readyz":
            try:
                ok = bool(self._ready())
            except Exception:
                ok = False
            return _OK if ok else _NOT_READY
        return _NOT_FOUND

    def __repr__(self) -> str:
        return f"<AdminServer {self.host}:{self.port}{'' if self._server else ' closed'}>"


async def _discard_body(lines: list[bytes], reader: asyncio.StreamReader) -> None:
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            v = value.strip()
            if v.isdigit() and int(v) <= MAX_DISCARDED_BODY:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reader.readexactly(int(v)), HEAD_TIMEOUT)
            return


async def start_admin(address: str, registry: CollectorRegistry, ready: Callable[[], bool]) -> AdminServer:
    """Listen on ``address`` (``HOST:PORT``, port 0 picks a free one) on the running loop."""
    host, port = split_address(address)
    server = AdminServer(registry, ready)
    await server._start(host, port)
    return server


__all__ = ["AdminServer", "split_address", "start_admin"]
