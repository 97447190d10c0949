"""Upstream HTTP/1.1 connections and keep-alive pools (asyncio + httptools). I/O lives here.

A connection carries one request at a time. The response head is awaited; body chunks are pushed
to a sink as they arrive (streaming), with flow control back to the upstream socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol, cast

import httptools

from garrison.errors import UpstreamError
from garrison.pipeline.route import Upstream
from garrison.reasons import Reason

log = logging.getLogger("garrison.upstream")

BodySink = Callable[[bytes], None]


class UpstreamListener(Protocol):
    """Who is told, after each batch of bytes or a failure, that a connection's state moved on."""

    def upstream_event(self, conn: UpstreamConnection) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One connection to an upstream. Not reentrant: the pool hands it to one request at a time.

    State is plain flags (``head_received``, ``complete``, ``error``). A request follows it either
    through ``listener`` (called once after each ``data_received`` batch and on failure: the server's
    callback path, no future, no task) or through the ``head_done``/``done`` futures, created only when
    asked for (the awaiting path).
    """

    __slots__ = (
        "_done_fut",
        "_head_fut",
        "_pending",
        "_sink",
        "body_bytes",
        "closed",
        "complete",
        "error",
        "head_only",
        "head_received",
        "headers",
        "keep_alive",
        "listener",
        "parser",
        "pool",
        "status",
        "transport",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.head_received = False
        self.complete = False
        self.error: UpstreamError | None = None
        self._head_fut: asyncio.Future[None] | None = None
        self._done_fut: asyncio.Future[None] | None = None
        self._sink: BodySink | None = None
        self._pending: list[bytes] = []
        self.body_bytes = 0
        self.head_only = False
        self.listener: UpstreamListener | None = None

    # -- futures, for the awaiting path ---------------------------------------------------------
    @property
    def head_done(self) -> asyncio.Future[None]:
        fut = self._head_fut
        if fut is None:
            fut = self._head_fut = self.pool.loop.create_future()
            if self.head_received:
                fut.set_result(None)
            elif self.error is not None:
                fut.set_exception(self.error)
                fut.exception()  # retrieved: nobody may await it
        return fut

    @property
    def done(self) -> asyncio.Future[None]:
        fut = self._done_fut
        if fut is None:
            fut = self._done_fut = self.pool.loop.create_future()
            if self.complete:
                fut.set_result(None)
            elif self.error is not None:
                fut.set_exception(self.error)
                fut.exception()
        return fut

    def _set_head(self) -> None:
        self.head_received = True
        fut = self._head_fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _set_complete(self) -> None:
        self.complete = True
        fut = self._done_fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("upstream switched protocols", Reason.UPSTREAM_BAD_RESPONSE))
            return
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"bad upstream response: {exc}", Reason.UPSTREAM_BAD_RESPONSE))
            return
        listener = self.listener
        if listener is not None:
            listener.upstream_event(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if not self.complete and self.error is None:
            # Read-until-close bodies end here (RFC 9112 §6.3 rule 8).
            if self.head_received and not self.keep_alive and exc is None and not self._has_length():
                self._set_complete()
                listener = self.listener
                if listener is not None:
                    listener.upstream_event(self)
            else:
                self._fail(UpstreamError("upstream closed the connection", Reason.UPSTREAM_BAD_RESPONSE))

    def pause_writing(self) -> None:  # upstream not reading our request body fast enough
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.complete:
            self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self.complete or self.head_received:
            self.keep_alive = False  # a response nobody asked for: never reuse this connection
            return
        self.status = self.parser.get_status_code()
        self.keep_alive = bool(self.parser.should_keep_alive())
        if 100 <= self.status < 200:  # interim response (100 Continue): drop it, wait for the final one
            self.headers = []
            return
        self._set_head()
        if self.head_only or self.status in (204, 304):
            # No body follows (RFC 9112 §6.3 rules 1-2); the parser cannot know about HEAD, so
            # the connection is not reused after a HEAD.
            if self.head_only:
                self.keep_alive = False
            self._set_complete()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.body_bytes += len(body)
        if self._sink is not None:
            self._sink(body)
        else:
            self._pending.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200 or not self.head_received:
            return
        if not self.complete:
            self._set_complete()

    # -- use by the proxy -----------------------------------------------------------------------
    def _has_length(self) -> bool:
        return any(k in (b"content-length", b"transfer-encoding") for k, _ in self.headers)

    def _fail(self, exc: UpstreamError) -> None:
        if self.error is None and not self.complete:
            self.error = exc
            for fut in (self._head_fut, self._done_fut):
                if fut is not None and not fut.done():
                    fut.set_exception(exc)
                    fut.exception()  # marks it retrieved: a future nobody awaits must not log a warning
        self.close()
        listener = self.listener
        if listener is not None:
            listener.upstream_event(self)

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
        return self.keep_alive and not self.closed and self.complete and self.error is None


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

    def acquire_idle(self) -> UpstreamConnection | None:
        """An idle keep-alive connection, reset for a new request, or None (then ``await acquire()``)."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn._reset()
                return conn
        return None

    async def acquire(self) -> UpstreamConnection:
        conn = self.acquire_idle()
        if conn is not None:
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
            conn.listener = None
            self._idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: UpstreamConnection) -> None:
        self._all.discard(conn)
        with contextlib.suppress(ValueError):  # not idle: nothing to remove
            self._idle.remove(conn)

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
        # By the Upstream object itself (one per route per config): no dataclass hash per request.
        self._by_id: dict[int, tuple[Upstream, UpstreamPool]] = {}

    def get(self, upstream: Upstream) -> UpstreamPool:
        hit = self._by_id.get(id(upstream))
        if hit is not None and hit[0] is upstream:
            return hit[1]
        pool = self._pools.get(upstream)
        if pool is None:
            pool = self._pools[upstream] = UpstreamPool(upstream, connect_timeout=self.connect_timeout)
        if len(self._by_id) > 4096:  # reloads leave old Upstream objects behind: stay bounded
            self._by_id.clear()
        self._by_id[id(upstream)] = (upstream, pool)
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()


__all__ = ["BodySink", "Pools", "UpstreamConnection", "UpstreamListener", "UpstreamPool"]
