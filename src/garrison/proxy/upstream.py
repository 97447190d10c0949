"""Upstream HTTP/1.1 connections and keep-alive pools (asyncio + httptools). I/O lives here.

A connection carries one request at a time. The response head is awaited; body chunks are pushed
to a sink as they arrive (streaming), with flow control back to the upstream socket.
"""

from __future__ import annotations

import asyncio
from typing import cast
import logging
from collections import deque
from collections.abc import Callable

import httptools

from garrison.errors import UpstreamError
from garrison.pipeline.route import Upstream
from garrison.reasons import Reason

log = logging.getLogger("garrison.upstream")

BodySink = Callable[[bytes], None]


class UpstreamConnection(asyncio.Protocol):
    """One connection to an upstream. Not reentrant: the pool hands it to one request at a time."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        loop = self.pool.loop
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.head_done: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self._sink: BodySink | None = None
        self._pending: list[bytes] = []
        self.body_bytes = 0
        self.head_only = False

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("upstream switched protocols", Reason.UPSTREAM_BAD_RESPONSE))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"bad upstream response: {exc}", Reason.UPSTREAM_BAD_RESPONSE))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if not self.done.done():
            # Read-until-close bodies end here (RFC 9112 §6.3 rule 8).
            if self.head_done.done() and not self.keep_alive and exc is None and not self._has_length():
                self.done.set_result(None)
            else:
                self._fail(UpstreamError("upstream closed the connection", Reason.UPSTREAM_BAD_RESPONSE))

    def pause_writing(self) -> None:  # upstream not reading our request body fast enough
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = bool(self.parser.should_keep_alive())
        if 100 <= self.status < 200:  # interim response (100 Continue): drop it, wait for the final one
            self.headers = []
            return
        if not self.head_done.done():
            self.head_done.set_result(None)
        if self.head_only or self.status in (204, 304):
            # No body follows (RFC 9112 §6.3 rules 1-2); the parser cannot know about HEAD, so
            # the connection is not reused after a HEAD.
            if self.head_only:
                self.keep_alive = False
            if not self.done.done():
                self.done.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.done.done():
            return
        self.body_bytes += len(body)
        if self._sink is not None:
            self._sink(body)
        else:
            self._pending.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            return
        if not self.done.done():
            self.done.set_result(None)

    # -- use by the proxy -----------------------------------------------------------------------
    def _has_length(self) -> bool:
        return any(k in (b"content-length", b"transfer-encoding") for k, _ in self.headers)

    def _fail(self, exc: UpstreamError) -> None:
        for fut in (self.head_done, self.done):
            if not fut.done():
                fut.set_exception(exc)
            if not fut.cancelled():
                fut.exception()  # marks it retrieved: a future nobody awaits must not log a warning
        self.close()

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def take_pending(self) -> bytes:
        """Body bytes that arrived before a sink was set (they are handed over only once)."""
        pending, self._pending = self._pending, []
        return b"".join(pending)

    def set_sink(self, sink: BodySink) -> None:
        """Start delivering body chunks to ``sink`` (chunks that came early are delivered first)."""
        pending, self._pending = self._pending, []
        self._sink = sink
        for chunk in pending:
            sink(chunk)

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def reusable(self) -> bool:
        return self.keep_alive and not self.closed and self.done.done() and self.done.exception() is None


class UpstreamPool:
    """Keep-alive connections to one upstream. Idle connections are reused LIFO (warmest first)."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        connect_timeout: float = 5.0,
        max_idle: int = 256,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.upstream = upstream
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.loop = loop or asyncio.get_running_loop()
        self._idle: deque[UpstreamConnection] = deque()
        self._all: set[UpstreamConnection] = set()
        self._closing = False

    async def acquire(self) -> UpstreamConnection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                conn._reset()
                return conn
        if self._closing:
            raise UpstreamError("gateway is shutting down", Reason.UPSTREAM_UNAVAILABLE)
        try:
            _, proto = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: UpstreamConnection(self), self.upstream.host, self.upstream.port
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            raise UpstreamError(f"connect to {self.upstream} timed out", Reason.UPSTREAM_TIMEOUT) from None
        except OSError as exc:
            raise UpstreamError(
                f"connect to {self.upstream} failed: {exc.strerror or exc}", Reason.UPSTREAM_CONNECT_FAILED
            ) from None
        self._all.add(proto)
        return proto

    def release(self, conn: UpstreamConnection) -> None:
        if conn.reusable() and not self._closing and len(self._idle) < self.max_idle:
            conn._sink = None
            self._idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: UpstreamConnection) -> None:
        self._all.discard(conn)
        try:
            self._idle.remove(conn)
        except ValueError:
            pass

    def close(self) -> None:
        self._closing = True
        for conn in list(self._all):
            conn.close()
        self._idle.clear()

    def __repr__(self) -> str:
        return f"<UpstreamPool {self.upstream} idle={len(self._idle)} open={len(self._all)}>"


class Pools:
    """One pool per distinct upstream, shared across config reloads (keyed by the Upstream value)."""

    def __init__(self, *, connect_timeout: float = 5.0) -> None:
        self.connect_timeout = connect_timeout
        self._pools: dict[Upstream, UpstreamPool] = {}

    def get(self, upstream: Upstream) -> UpstreamPool:
        pool = self._pools.get(upstream)
        if pool is None:
            pool = self._pools[upstream] = UpstreamPool(upstream, connect_timeout=self.connect_timeout)
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()


__all__ = ["BodySink", "Pools", "UpstreamConnection", "UpstreamPool"]
