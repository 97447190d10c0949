"""The HTTP/1.1 server side of the gateway: asyncio + httptools (llhttp), keep-alive, streaming.

One ``HttpConnection`` per client connection. Requests on a connection are served strictly in order
(pipelined ones wait, with reading paused). Each request snapshots the current ``Runtime`` when its
head is complete, so a config reload never changes a request in flight.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

import httptools
from cryptography import x509

from garrison.errors import HttpError, UpstreamError
from garrison.http.framing import Framing
from garrison.identity.authenticator import cert_thumbprint
from garrison.identity.ca.certs import serial_hex
from garrison.identity.ca.revocation import issued_before, svid_id_of
from garrison.pipeline.chain import Pending
from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import ResponseHead
from garrison.pipeline.stages.dlp import ResponseDlp
from garrison.pipeline.stages.validation import RequestValidation
from garrison.pipeline.stages.waf import BodyCheck
from garrison.pipeline.verdicts import CONTINUE, Deny, Respond, Verdict
from garrison.proxy.body import BodyStream
from garrison.proxy.build import RouteChain
from garrison.proxy.forward import NO_BODY, build_upstream_head, client_response_head
from garrison.proxy.responses import (
    BASE_SECURITY_HEADERS,
    CACHE_NO_STORE,
    HSTS,
    error_response,
    render_head,
)
from garrison.proxy.upstream import BodySink, UpstreamConnection, UpstreamPool
from garrison.reasons import Reason
from garrison.validate.errors import error_body as validation_error_body

if TYPE_CHECKING:
    from garrison.config.models import Limits
    from garrison.pipeline.route import Route
    from garrison.proxy.runtime import Runtime

log = logging.getLogger("garrison.server")

_CRLF = b"\r\n"
_LAST_CHUNK = b"0\r\n\r\n"


_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
_ID_PREFIX = os.urandom(6).hex()  # per process; request ids are unique, not secret
_id_counter = itertools.count(1)


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):010x}"


INLINE_BODY_CHECK_BYTES = 2048  # smaller bodies are checked on the loop: a thread hop costs more
_body_check_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _body_checks() -> concurrent.futures.ThreadPoolExecutor:
    global _body_check_pool
    if _body_check_pool is None:
        _body_check_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="garrison-body-check")
    return _body_check_pool


class RevokedSerials(Protocol):
    """Where revocations come from (``proxy.trust.TrustPuller``): a set and a dict lookup per request."""

    @property
    def revoked_serials(self) -> frozenset[str]: ...

    @property
    def revoked_ids(self) -> Mapping[str, int]: ...  # SPIFFE ID -> before (``issued_before``)


def _peer_facts(der: bytes) -> tuple[str | None, str, float]:
    """Serial (lower-case hex), SPIFFE ID ("" if none) and notBefore of the peer's certificate."""
    try:
        cert = x509.load_der_x509_certificate(der)
        return serial_hex(cert), svid_id_of(cert) or "", cert.not_valid_before_utc.timestamp()
    except ValueError:  # pragma: no cover - OpenSSL verified and re-encoded this certificate
        return None, "", 0.0


class Exchange:
    """One request on a connection: its head as parsed, and its body stream."""

    __slots__ = (
        "body",
        "head_bytes",
        "headers",
        "http11",
        "keep_alive",
        "limits",
        "method",
        "upgrade",
        "url",
    )

    def __init__(self, limits: Limits) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.method = ""
        self.http11 = True
        self.keep_alive = True
        self.upgrade = False
        self.limits = limits  # of the runtime current when the message began
        self.body = BodyStream()


class _Forwarding:
    """A request being forwarded on the callback path: no task, no future, no timer."""

    __slots__ = (
        "chunked_out",
        "close",
        "conn",
        "ctx",
        "ex",
        "head_sent",
        "last_chunk_sent",
        "pool",
        "route",
        "rt",
        "started",
        "status",
    )

    def __init__(
        self,
        rt: Runtime,
        ctx: RequestContext,
        ex: Exchange,
        route: Route,
        pool: UpstreamPool,
        conn: UpstreamConnection,
        close: bool,
        started: float,
    ) -> None:
        self.rt = rt
        self.ctx = ctx
        self.ex = ex
        self.route = route
        self.pool = pool
        self.conn = conn
        self.close = close
        self.started = started
        self.head_sent = False
        self.chunked_out = False
        self.last_chunk_sent = False
        self.status = 500


class HttpConnection(asyncio.Protocol):
    """A client connection. Parsing callbacks come from httptools.

    A request is begun when its head is complete and the bytes at hand are parsed. Its pipeline runs
    synchronously (a stage that really has to wait, such as a JWKS refetch, moves the rest of the
    request into a task). A request without a body, forwarded on an idle pooled upstream connection,
    then continues from the upstream connection's callbacks (``upstream_event``) with no task, future
    or timer; any other request is served by a task (``_serve``). Timeouts are deadlines checked by
    the server's sweeper.
    """

    __slots__ = (
        "active",
        "broken",
        "closing",
        "deadline",
        "fwd",
        "loop",
        "parser",
        "parsing",
        "peer_cert",
        "peer_id",
        "peer_ip",
        "peer_not_before",
        "peer_serial",
        "peer_x5t",
        "queue",
        "reading_paused",
        "ready",
        "server",
        "task",
        "tls",
        "transport",
        "up_deadline",
        "upstream_reading",
        "write_paused",
    )

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer_ip = ""
        self.tls = False
        self.peer_cert: bytes | None = None
        self.peer_serial: str | None = None  # lower-case hex, for the revocation check on each request
        self.peer_id = ""  # the peer SVID's SPIFFE ID and notBefore, for the check by revoked ID
        self.peer_not_before = 0.0
        self.peer_x5t: str | None = None  # RFC 8705 thumbprint, for certificate-bound tokens
        self.parsing: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.active: Exchange | None = None
        self.ready: Exchange | None = None  # active, head complete, begun once the bytes at hand are parsed
        self.closing = False
        self.broken = False  # the parser saw a violation: no more bytes are parsed on this connection
        self.reading_paused = False
        self.write_paused = False
        self.deadline = 0.0
        self.up_deadline = 0.0  # of the upstream answer on the callback path
        self.upstream_reading: UpstreamConnection | None = None  # the connection whose body we relay
        self.task: asyncio.Task[None] | None = None
        self.fwd: _Forwarding | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else ""
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            self.tls = True
            der = self.peer_cert = sslobj.getpeercert(binary_form=True)
            if der:  # once per connection: the request path only compares strings
                self.peer_x5t = cert_thumbprint(der)
                self.peer_serial, self.peer_id, self.peer_not_before = _peer_facts(der)
        limits = self.server.runtime.limits
        self.deadline = self.loop.time() + limits.idle_timeout
        self.server.connections.add(self)
        self.server.on_connection_opened()
        if len(self.server.connections) > limits.max_connections:
            self._abort_with(Reason.OVERLOADED)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self in self.server.connections:
            self.server.connections.discard(self)
            self.server.on_connection_closed()
        for ex in (self.parsing, self.active, *self.queue):
            if ex is not None:
                ex.body.abort()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        fw = self.fwd
        if fw is not None:  # the client went away while the upstream was answering
            self._fwd_end(fw, fw.status if fw.head_sent else 499, True, reuse=False)

    def data_received(self, data: bytes) -> None:
        if self.closing or self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrades (WebSocket, h2c) and CONNECT are not proxied yet: refuse clearly.
            self._reject_current(Reason.METHOD_NOT_SUPPORTED)
        except httptools.HttpParserError as exc:
            # An HttpError raised in one of our callbacks reaches us wrapped by httptools.
            cause = exc.__context__ if isinstance(exc.__context__, HttpError) else None
            self._reject_current(cause.reason if cause is not None else _parser_reason(exc))
        except HttpError as exc:
            self._reject_current(exc.reason)
        ex = self.ready
        if ex is not None:
            self.ready = None
            if not self.closing and self.active is ex:
                self._begin(ex)

    def pause_writing(self) -> None:
        self.write_paused = True
        up = self.upstream_reading
        if up is not None:
            up.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        up = self.upstream_reading
        if up is not None:
            up.resume_reading()

    # -- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        limits = self.server.runtime.limits
        self.parsing = Exchange(limits)
        self.deadline = self.loop.time() + limits.header_timeout

    def on_url(self, url: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        ex.url += url
        ex.head_bytes += len(url)
        if len(ex.url) > ex.limits.max_uri_bytes:
            raise HttpError(reason=Reason.URI_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        ex.head_bytes += len(name) + len(value) + 4
        limits = ex.limits
        if ex.method:
            # A trailer field (after a chunked body, RFC 9112 §7.1.2): counted against the limits,
            # never merged into the header section and never forwarded.
            if ex.head_bytes > limits.max_header_bytes:
                raise HttpError(reason=Reason.HEADERS_TOO_LARGE)
            return
        headers = ex.headers
        headers.append((name.lower(), value))
        if ex.head_bytes > limits.max_header_bytes:
            raise HttpError(reason=Reason.HEADERS_TOO_LARGE)
        if len(headers) > limits.max_headers:
            raise HttpError(reason=Reason.TOO_MANY_HEADERS)

    def on_headers_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        parser = self.parser
        method = parser.get_method()
        ex.method = _METHODS.get(method) or method.decode("ascii", "replace")
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise HttpError(reason=Reason.VERSION_NOT_SUPPORTED)
        ex.http11 = version == "1.1"
        ex.keep_alive = bool(parser.should_keep_alive())
        ex.upgrade = bool(parser.should_upgrade())
        self.deadline = self.loop.time() + ex.limits.body_timeout
        if self.active is None:
            # Begun by data_received once the bytes at hand are parsed (not from inside the parser).
            self.active = self.ready = ex
        else:  # pipelined: serve in order, and stop reading more until we catch up
            self.queue.append(ex)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        self.deadline = self.loop.time() + ex.limits.body_timeout
        if ex.body.feed(body, ex.limits.max_body_bytes) and not self.reading_paused:
            self._pause_reading()  # the handler resumes reading when it has drained the buffer

    def on_message_complete(self) -> None:
        ex = self.parsing
        if ex is not None:
            ex.body.finish()
        self.parsing = None

    # -- flow control -----------------------------------------------------------------------
    def _pause_reading(self) -> None:
        if self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and self.reading_paused and not self.closing and not self.broken:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- request handling -------------------------------------------------------------------
    def _begin(self, ex: Exchange) -> None:
        """Run the request's pipeline; answer, forward on the callback path, or hand over to a task."""
        self.active = ex
        ex.body.on_drain = self._resume_reading
        rt = self.server.runtime  # snapshot: in-flight requests finish on the config they started with
        started = time.perf_counter()
        ctx = RequestContext(
            method=ex.method,
            raw_target=ex.url,
            headers=ex.headers,
            client_addr=self.peer_ip,
            request_id=_new_request_id(),
            now=time.time(),
            tls=self.tls,
            peer_cert_der=self.peer_cert,
            peer_cert_x5t=self.peer_x5t,
        )
        if not ex.http11:
            ctx.http_version = "1.0"
        close = not ex.keep_alive
        status = 500
        try:
            verdict: Verdict | Pending
            serial = self.peer_serial
            trust = self.server.trust
            if serial is not None and trust is not None and serial in trust.revoked_serials:
                # Checked on every request, so a revocation also cuts kept-alive connections.
                verdict = Deny(Reason.SVID_REVOKED, "tls", detail=f"client SVID serial {serial} revoked")
                close = True
            elif (
                serial is not None
                and trust is not None
                and (before := trust.revoked_ids.get(self.peer_id)) is not None
                and issued_before(self.peer_not_before, before)
            ):
                detail = f"client SVID serial {serial} revoked: {self.peer_id} revoked after its issuance"
                verdict = Deny(Reason.SVID_REVOKED, "tls", detail=detail)
                close = True
            elif ex.upgrade:
                verdict = Deny(Reason.METHOD_NOT_SUPPORTED, "hygiene", detail="upgrade/CONNECT not supported")
            else:
                verdict = rt.pre.run_fast(ctx)
                if verdict is CONTINUE:
                    route = ctx.route
                    assert route is not None and route.chain is not None
                    verdict = route.chain.run_fast(ctx)
            if verdict is CONTINUE:
                if self._forward_fast(rt, ctx, ex, close, started):
                    return  # continues in upstream_event
                self.task = self.loop.create_task(self._serve(ex, rt, ctx, started, verdict))
                return
            if isinstance(verdict, Pending):
                self.task = self.loop.create_task(self._serve(ex, rt, ctx, started, verdict))
                return
            status, close = self._answer(ctx, ex, verdict, close)
        except Exception:
            log.exception("request %s failed", ctx.request_id)
            ctx.decision = Deny(Reason.STAGE_ERROR, "gateway")
            close = True
            status = self._send_error(ctx, 500, Reason.STAGE_ERROR, (), True)
        self._observe(rt, ctx, status, started)
        self._finish(ex, close)

    def _answer(self, ctx: RequestContext, ex: Exchange, verdict: Verdict, close: bool) -> tuple[int, bool]:
        """Send the local answer to a request the pipeline ended (a Deny or a Respond)."""
        if isinstance(verdict, Deny):
            ctx.decision = verdict
            # After a hygiene denial the framing of whatever follows cannot be trusted: close.
            close = close or not ex.body.complete or verdict.stage == "hygiene"
            return self._send_deny(ctx, verdict, close), close
        if isinstance(verdict, Respond):
            close = close or not ex.body.complete
            return self._send_local(ctx, verdict, close), close
        raise TypeError(f"not a final verdict: {verdict!r}")  # pragma: no cover - the chain returns no other

    def _observe(self, rt: Runtime, ctx: RequestContext, status: int, started: float) -> None:
        try:
            rt.observe(ctx, status, time.perf_counter() - started)
        except Exception:  # telemetry must never take a connection down
            log.exception("telemetry failed on request %s", ctx.request_id)

    async def _serve(
        self, ex: Exchange, rt: Runtime, ctx: RequestContext, started: float, verdict: Verdict | Pending
    ) -> None:
        """The rest of a request that has to wait: a suspended stage, a request body, a new connection."""
        status = 500
        close = not ex.keep_alive
        try:
            if isinstance(verdict, Pending):
                in_pre = verdict.chain is rt.pre
                verdict = await verdict.finish()
                if in_pre and verdict is CONTINUE:
                    route = ctx.route
                    assert route is not None and route.chain is not None
                    verdict = await route.chain.run(ctx)
            if verdict is CONTINUE:
                status, close = await self._forward(rt, ctx, ex, close)
            else:
                status, close = self._answer(ctx, ex, verdict, close)
        except asyncio.CancelledError:
            close = True
            raise
        except Exception:
            log.exception("request %s failed", ctx.request_id)
            ctx.decision = Deny(Reason.STAGE_ERROR, "gateway")
            close = True
            status = self._send_error(ctx, 500, Reason.STAGE_ERROR, (), True)
        finally:
            self._observe(rt, ctx, status, started)
            self.task = None
            self._finish(ex, close)

    # -- forwarding on the callback path ------------------------------------------------------
    def _forward_fast(
        self, rt: Runtime, ctx: RequestContext, ex: Exchange, close: bool, started: float
    ) -> bool:
        """Send a body-less request on an idle pooled connection; False when the task path must do it."""
        framing = ctx.framing
        if (framing is not None and framing.has_body) or not ex.body.complete:
            return False
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        route = ctx.route
        assert route is not None
        chain = route.chain
        if isinstance(chain, RouteChain) and chain.buffers:
            return False  # validation / DLP buffer bodies: the task path does that
        pool = rt.pools.get(route.upstream)
        conn = pool.acquire_idle()
        if conn is None:
            return False
        fw = _Forwarding(rt, ctx, ex, route, pool, conn, close, started)
        self.fwd = fw
        conn.head_only = ex.method == "HEAD"
        conn.listener = self
        self.up_deadline = self.loop.time() + rt.limits.upstream_timeout
        conn.send(build_upstream_head(ctx, route, framing or NO_BODY))
        return True

    def upstream_event(self, conn: UpstreamConnection) -> None:
        """The upstream connection of the request on the callback path has news (see UpstreamListener)."""
        fw = self.fwd
        if fw is None or fw.conn is not conn:
            return
        try:
            if conn.error is not None:
                self._fwd_failed(fw, conn.error)
            elif conn.head_received:
                if not fw.head_sent and not self._fwd_head(fw):
                    return
                if conn.complete:
                    self._fwd_complete(fw)
        except Exception:
            log.exception("request %s failed", fw.ctx.request_id)
            fw.ctx.decision = Deny(Reason.STAGE_ERROR, "gateway")
            status = (
                fw.status if fw.head_sent else self._send_error(fw.ctx, 500, Reason.STAGE_ERROR, (), True)
            )
            if self.fwd is fw:
                self._fwd_end(fw, status, True, reuse=False)

    def _fwd_head(self, fw: _Forwarding) -> bool:
        """Send the response head (with the body when it is all here). False if the request ended."""
        conn, ctx, route = fw.conn, fw.ctx, fw.route
        head = ResponseHead(conn.status, conn.headers)
        status = head.status
        if status >= 500 and route.mask_upstream_errors:
            # Upstream 5xx bodies may carry stack traces: replace with a generic error.
            ctx.decision = Deny(Reason.UPSTREAM_ERROR_MASKED, "response", detail=f"upstream {status}")
            fw.rt.upstream_error(route.name, Reason.UPSTREAM_ERROR_MASKED)
            sent = self._send_error(ctx, status, Reason.UPSTREAM_ERROR_MASKED, (), fw.close)
            self._fwd_end(fw, sent, fw.close, reuse=False)
            return False
        if route.chain is not None:
            route.chain.on_response(ctx, head)
        no_body = conn.head_only or status in (204, 304) or 100 <= status < 200
        head_bytes, chunked_out, fw.close = client_response_head(ctx, head, fw.ex.http11, no_body, fw.close)
        transport = self.transport
        if transport is None or transport.is_closing():
            self._fwd_end(fw, 499, True, reuse=False)
            return False
        fw.head_sent = True
        fw.status = status
        fw.chunked_out = chunked_out
        if no_body:
            transport.write(head_bytes)
        elif conn.complete:  # the whole response is here (the common small response): one write
            body = conn.take_pending()
            if chunked_out:
                fw.last_chunk_sent = True
                if body:
                    transport.write(b"%s%x\r\n%s\r\n%s" % (head_bytes, len(body), body, _LAST_CHUNK))
                else:
                    transport.write(head_bytes + _LAST_CHUNK)
            else:
                transport.write(head_bytes + body)
        else:  # streaming: what came so far, then each chunk as it arrives
            if chunked_out:
                transport.write(head_bytes)
                conn.set_sink(_chunked_writer(transport))
            else:
                transport.write(head_bytes + conn.take_pending())
                conn.set_sink(transport.write)
            self.upstream_reading = conn
            if self.write_paused:
                conn.pause_reading()
            self.up_deadline = self.loop.time() + fw.rt.limits.upstream_timeout
        return True

    def _fwd_complete(self, fw: _Forwarding) -> None:
        if fw.chunked_out and not fw.last_chunk_sent:
            fw.last_chunk_sent = True
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.write(_LAST_CHUNK)
        self._fwd_end(fw, fw.status, fw.close, reuse=True)

    def _fwd_failed(self, fw: _Forwarding, exc: UpstreamError) -> None:
        ctx = fw.ctx
        ctx.decision = Deny(exc.reason, "forward", detail=str(exc))
        fw.rt.upstream_error(fw.route.name, exc.reason)
        # Head already sent: all we can do is cut the connection.
        status = fw.status if fw.head_sent else self._send_error(ctx, exc.reason.status, exc.reason, (), True)
        self._fwd_end(fw, status, True, reuse=False)

    def _fwd_end(self, fw: _Forwarding, status: int, close: bool, *, reuse: bool) -> None:
        self.fwd = None
        self.upstream_reading = None
        conn = fw.conn
        conn.listener = None
        if reuse:
            fw.pool.release(conn)
        else:
            conn.close()
        self._observe(fw.rt, fw.ctx, status, fw.started)
        self._finish(fw.ex, close)

    # -- forwarding on the task path ------------------------------------------------------------
    async def _forward(self, rt: Runtime, ctx: RequestContext, ex: Exchange, close: bool) -> tuple[int, bool]:
        route = ctx.route
        assert route is not None
        framing = ctx.framing or NO_BODY
        chain = route.chain
        validation, dlp = (chain.validation, chain.dlp) if isinstance(chain, RouteChain) else (None, None)
        body: bytes | None = None
        if validation is not None and framing.has_body:
            limit = validation.body_limit(ctx)
            if validation.shadow and any(d.stage == validation.name for d in ctx.shadow_denials):
                limit = None  # the head already failed (and was recorded): do not record it twice
            if limit is not None:
                # Validate the whole body before anything reaches the upstream.
                answered = await self._validate_body(ctx, ex, validation, limit, close)
                if isinstance(answered, tuple):
                    return answered
                body = answered
                framing = Framing(len(body), False)
        pool = rt.pools.get(route.upstream)
        try:
            conn = await pool.acquire()
        except UpstreamError as exc:
            ctx.decision = Deny(exc.reason, "forward", detail=str(exc))
            rt.upstream_error(route.name, exc.reason)
            return self._send_error(ctx, exc.reason.status, exc.reason, (), close), close
        ok = False
        head_sent = False
        try:
            head_only = ex.method == "HEAD"
            conn.head_only = head_only
            if body is not None:
                conn.send(build_upstream_head(ctx, route, framing) + body)
            else:
                conn.send(build_upstream_head(ctx, route, framing))
                if framing.has_body:
                    await self._relay_request_body(ex, conn, framing.chunked)
            await _await_with_timeout(self.loop, conn.head_done, rt.limits.upstream_timeout)
            head = ResponseHead(conn.status, conn.headers)
            if head.status >= 500 and route.mask_upstream_errors:
                # Upstream 5xx bodies may carry stack traces: replace with a generic error.
                ctx.decision = Deny(
                    Reason.UPSTREAM_ERROR_MASKED, "response", detail=f"upstream {head.status}"
                )
                rt.upstream_error(route.name, Reason.UPSTREAM_ERROR_MASKED)
                return self._send_error(ctx, head.status, Reason.UPSTREAM_ERROR_MASKED, (), close), close
            route.chain.on_response(ctx, head) if route.chain is not None else None
            no_body = head_only or head.status in (204, 304) or 100 <= head.status < 200
            limit = dlp.body_limit(ctx, head) if dlp is not None and not no_body else None
            early: list[bytes] = []
            if limit is not None:
                early = await self._buffer_response(conn, limit, rt.limits.upstream_timeout)
                if sum(map(len, early)) <= limit:  # the whole body is here, within the limit
                    assert dlp is not None
                    status, close = self._send_dlp(ctx, ex, head, dlp, b"".join(early), close)
                    head_sent = True
                    ok = status == head.status
                    return status, close
            head_bytes, chunked_out, close = client_response_head(ctx, head, ex.http11, no_body, close)
            transport = self.transport
            if transport is None or transport.is_closing():
                return 499, True
            head_sent = True
            if early:  # over the DLP limit: what was buffered goes out untouched, the rest streams
                transport.write(head_bytes)
                write = _chunked_writer(transport) if chunked_out else transport.write
                for chunk in early:
                    write(chunk)
                conn.set_sink(write)
                self.upstream_reading = conn
                if not self.write_paused:
                    conn.resume_reading()
            elif not no_body and conn.complete and not chunked_out:
                # The whole response is already here (the common small-response case): one write.
                transport.write(head_bytes + conn.take_pending())
            else:
                transport.write(head_bytes)
            if not no_body and not early:
                if chunked_out:
                    conn.set_sink(_chunked_writer(transport))
                else:
                    conn.set_sink(transport.write)
                self.upstream_reading = conn
                if self.write_paused:
                    conn.pause_reading()
            await _await_with_timeout(self.loop, conn.done, rt.limits.upstream_timeout)
            if chunked_out:
                transport.write(_LAST_CHUNK)
            ok = True
            return head.status, close
        except UpstreamError as exc:
            ctx.decision = Deny(exc.reason, "forward", detail=str(exc))
            rt.upstream_error(route.name, exc.reason)
            if head_sent:
                return conn.status, True  # head already sent: all we can do is cut the connection
            return self._send_error(ctx, exc.reason.status, exc.reason, (), True), True
        except HttpError as exc:  # the client's body broke a limit or its framing mid-stream
            ctx.decision = Deny(exc.reason, "hygiene")
            return self._send_error(ctx, exc.reason.status, exc.reason, (), True), True
        finally:
            self.upstream_reading = None
            if ok:
                pool.release(conn)
            else:
                conn.close()

    async def _validate_body(
        self, ctx: RequestContext, ex: Exchange, validation: BodyCheck, limit: int, close: bool
    ) -> bytes | tuple[int, bool]:
        """Buffer the request body (at most ``limit`` bytes) and validate it: the body, or the answer sent.

        A shadowed stage buffers up to the listener's limit, so an oversized body is recorded, not refused.
        """
        if validation.shadow:
            limit = max(limit, ex.limits.max_body_bytes)
        parts: list[bytes] = []
        size = 0
        try:
            while (chunk := await ex.body.read()) is not None:
                size += len(chunk)
                if size > limit:
                    ctx.decision = Deny(
                        Reason.BODY_TOO_LARGE, validation.name, detail=f"body over {limit} bytes"
                    )
                    status = self._send_error(ctx, 413, Reason.BODY_TOO_LARGE, (), True)
                    return status, True
                parts.append(chunk)
        except HttpError as exc:  # the client's body broke a limit or its framing mid-stream
            ctx.decision = Deny(exc.reason, "hygiene")
            return self._send_error(ctx, exc.reason.status, exc.reason, (), True), True
        body = b"".join(parts)
        if len(body) < INLINE_BODY_CHECK_BYTES:
            deny = validation.validate_request(ctx, body)
        else:
            # A WAF pass over a few KB takes tens of ms of Python: off the event loop, so other
            # connections keep being served (one worker: the checks are CPU-bound under the GIL).
            deny = await self.loop.run_in_executor(_body_checks(), validation.validate_request, ctx, body)
        if deny is not None:
            ctx.decision = deny
            return self._send_deny(ctx, deny, close), close
        return body

    async def _buffer_response(self, conn: UpstreamConnection, limit: int, timeout: float) -> list[bytes]:
        """The response body's chunks once it is complete, or as soon as they pass ``limit`` bytes
        (then reading from the upstream is paused: the caller streams the rest)."""
        parts: list[bytes] = []
        if conn.complete:
            parts.append(conn.take_pending())
            return parts
        stop: asyncio.Future[None] = self.loop.create_future()
        size = 0

        def collect(chunk: bytes) -> None:
            nonlocal size
            parts.append(chunk)
            size += len(chunk)
            if size > limit and not stop.done():
                conn.pause_reading()
                stop.set_result(None)

        def finished(fut: asyncio.Future[None]) -> None:
            if not stop.done():
                stop.set_result(None)

        done = conn.done
        done.add_done_callback(finished)
        conn.set_sink(collect)
        await _await_with_timeout(self.loop, stop, timeout)
        if size <= limit and conn.error is not None:
            raise conn.error
        return parts

    def _send_dlp(
        self,
        ctx: RequestContext,
        ex: Exchange,
        head: ResponseHead,
        dlp: ResponseDlp,
        body: bytes,
        close: bool,
    ) -> tuple[int, bool]:
        """Send a buffered response after DLP (redacted, masked or as it was). Fails closed: a DLP
        error sends a 500, never the unchecked body."""
        try:
            new = dlp.transform_response(ctx, head, body)
        except Exception:
            log.exception("dlp failed on request %s", ctx.request_id)
            ctx.decision = Deny(Reason.STAGE_ERROR, dlp.name)
            return self._send_error(ctx, 500, Reason.STAGE_ERROR, (), True), True
        if new is None:  # untouched; whatever its upstream framing was, it is one buffer now
            head.headers[:] = [
                (k, v) for k, v in head.headers if k not in (b"content-length", b"transfer-encoding")
            ]
            head.headers.append((b"content-length", str(len(body)).encode()))
        else:
            body = new
        head_bytes, _, close = client_response_head(ctx, head, ex.http11, False, close)
        transport = self.transport
        if transport is None or transport.is_closing():
            return 499, True
        transport.write(head_bytes + body)
        return head.status, close

    async def _relay_request_body(self, ex: Exchange, conn: UpstreamConnection, chunked: bool) -> None:
        send = conn.send
        body = ex.body
        while True:
            chunk = await body.read()
            if chunk is None:
                break
            if chunked:
                send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                send(chunk)
        if chunked:
            send(_LAST_CHUNK)

    def _send_error(
        self,
        ctx: RequestContext,
        status: int,
        reason: Reason,
        extra: tuple[tuple[bytes, bytes], ...],
        close: bool,
    ) -> int:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(
                error_response(status, reason, ctx.request_id, extra=extra, close=close, tls=self.tls)
            )
        return status

    def _send_deny(self, ctx: RequestContext, deny: Deny, close: bool) -> int:
        """A denial's error response. Only validation denials carry a ``detail`` (already bounded and
        escaped by the validate package); every other one is ``{"error", "request_id"}``."""
        if deny.stage != RequestValidation.name or deny.rule_id is None or not deny.detail:
            return self._send_error(ctx, deny.status, deny.reason, deny.headers, close)
        if self.transport is not None and not self.transport.is_closing():
            body = validation_error_body(deny.detail, deny.reason, ctx.request_id)
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", ctx.request_id.encode()),
                CACHE_NO_STORE,
                *BASE_SECURITY_HEADERS,
                *deny.headers,
            ]
            if self.tls:
                headers.append(HSTS)
            if close:
                headers.append((b"connection", b"close"))
            self.transport.write(render_head(deny.status, headers) + body)
        return deny.status

    def _send_local(self, ctx: RequestContext, verdict: Respond, close: bool) -> int:
        headers = [*verdict.headers, (b"content-length", str(len(verdict.body)).encode())]
        headers.append((b"x-request-id", ctx.request_id.encode()))
        if close:
            headers.append((b"connection", b"close"))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(render_head(verdict.status, headers) + verdict.body)
        return verdict.status

    def _finish(self, ex: Exchange, close: bool) -> None:
        if self.active is ex:
            self.active = None
        if close or self.closing or self.broken or not ex.body.complete:
            self.close()
            return
        if self.queue:
            # The next pipelined request, begun from the loop (not recursively: a batch of pipelined
            # requests answered locally must not grow the stack).
            nxt = self.active = self.queue.popleft()
            self.loop.call_soon(self._begin_queued, nxt)
            return
        self.deadline = self.loop.time() + self.server.runtime.limits.idle_timeout
        if self.server.draining:
            self.close()
            return
        self._resume_reading()

    def _begin_queued(self, ex: Exchange) -> None:
        if not self.closing and self.active is ex:
            self._begin(ex)

    def _reject_current(self, reason: Reason) -> None:
        """A parse-level violation: answer it and close. The parser is unusable from here on.

        If a request is being handled (its head was fine, its body is not), its handler gets the
        error from the body stream and answers it; the connection closes after that response.
        """
        self.broken = True
        self._pause_reading()
        target = self.parsing if self.parsing is not None else self.active
        if self.active is not None and target is not None and (target is self.active or self.queue):
            target.body.fail(HttpError(reason=reason))
            if target is self.active:
                return
        if self.active is None and self.transport is not None:
            rid = _new_request_id()
            self.transport.write(error_response(reason.status, reason, rid, close=True, tls=self.tls))
            self.server.runtime.observe_reject(reason, self.peer_ip, rid)
        self.close()

    def _abort_with(self, reason: Reason) -> None:
        self._reject_current(reason)

    def expire(self, now: float) -> None:
        """Called by the server's sweeper: enforce header/body/idle/upstream timeouts."""
        fw = self.fwd
        if fw is not None and now >= self.up_deadline and not self.closing:
            fw.conn._fail(UpstreamError("upstream timed out", Reason.UPSTREAM_TIMEOUT))
            return
        if self.closing or now < self.deadline:
            return
        if self.active is None and self.parsing is not None:
            self._reject_current(Reason.REQUEST_TIMEOUT)  # slow head or body (slowloris)
        elif self.active is None:
            self.close()  # idle keep-alive connection
        elif self.active is not None and not self.active.body.complete:
            self.active.body.fail(HttpError(reason=Reason.REQUEST_TIMEOUT))

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            if self.transport is not None:
                self.transport.close()


class GatewayServer:
    """Listens on one address with the current Runtime; ``swap`` replaces the runtime atomically."""

    def __init__(self, runtime: Runtime, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.runtime = runtime
        self.ssl_context = ssl_context
        self.loop = asyncio.get_running_loop()
        self.connections: set[HttpConnection] = set()
        self.on_connection_opened: Callable[[], None] = _nothing  # telemetry hooks (per connection)
        self.on_connection_closed: Callable[[], None] = _nothing
        self.trust: RevokedSerials | None = None  # client SVIDs whose serial is listed here are refused
        self.draining = False
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        self._server = await self.loop.create_server(
            lambda: HttpConnection(self),
            host,
            port,
            ssl=self.ssl_context,
            reuse_port=reuse_port or None,
            backlog=1024,
        )
        # uvloop's Server.sockets is a list, typeshed says tuple: a compiled module would check it
        self.port = cast(Any, self._server).sockets[0].getsockname()[1]
        self._sweeper = self.loop.create_task(self._sweep())

    def swap(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def cut_revoked(self, revoked: frozenset[str], revoked_ids: Mapping[str, int] | None = None) -> int:
        """Close the idle connections whose client SVID is now revoked (by serial, or by its SPIFFE
        ID when ``revoked_ids`` is given); returns how many.

        A connection busy with a request finishes that one; its next request is refused (``_begin``).
        """
        ids = revoked_ids or {}
        n = 0
        for conn in list(self.connections):
            if conn.peer_serial is None or conn.active is not None:
                continue
            before = ids.get(conn.peer_id)
            if conn.peer_serial in revoked or (
                before is not None and issued_before(conn.peer_not_before, before)
            ):
                conn.close()
                n += 1
        return n

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = self.loop.time()
            for conn in list(self.connections):
                conn.expire(now)

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting, close idle connections, let in-flight requests finish (up to ``grace``)."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.active is None and conn.parsing is None:
                conn.close()
        deadline = self.loop.time() + grace
        while any(c.active is not None for c in self.connections) and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            await self._server.wait_closed()


def _chunked_writer(transport: asyncio.Transport) -> BodySink:
    write = transport.write

    def sink(chunk: bytes) -> None:
        if chunk:
            write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    return sink


def _nothing() -> None:
    return None


def _expire_future(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(UpstreamError("upstream timed out", Reason.UPSTREAM_TIMEOUT))


async def _await_with_timeout(
    loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None], timeout: float
) -> None:
    if fut.done():
        return fut.result()
    handle = loop.call_later(timeout, _expire_future, fut)
    try:
        await fut
    finally:
        handle.cancel()


def _parser_reason(exc: Exception) -> Reason:
    """Map llhttp's error text to our framing reason codes (RFC 9112 §6.1, §6.3, §7.1)."""
    text = str(exc).lower()
    if "content-length" in text and "transfer-encoding" in text:
        return Reason.FRAMING_CL_TE
    if "duplicate content-length" in text:
        return Reason.FRAMING_DUPLICATE_CONTENT_LENGTH
    if "content-length" in text:
        return Reason.FRAMING_BAD_CONTENT_LENGTH
    if "chunk" in text:
        return Reason.FRAMING_BAD_CHUNK
    if "transfer-encoding" in text:
        return Reason.FRAMING_BAD_TRANSFER_ENCODING
    if "method" in text:
        return Reason.METHOD_NOT_SUPPORTED
    if "version" in text:
        return Reason.VERSION_NOT_SUPPORTED
    return Reason.BAD_REQUEST


__all__ = ["GatewayServer", "HttpConnection", "RevokedSerials"]
