"""The control plane's HTTP/1.1 connection protocol: uvicorn's httptools protocol, hardened.

uvicorn's ``HttpToolsProtocol`` (llhttp) plus what the control plane needs and uvicorn lacks:

- the ``LIST`` method (hvac and the Vault API send it; llhttp refuses it): a request that starts
  a message with ``LIST`` is handed to the parser as ``PROPFIND`` and its scope gets ``LIST``
  back. Only whole messages at a message boundary are rewritten; a ``LIST`` request pipelined
  behind another one in the same read gets a 400 (after the first one's response) and the
  connection is closed. A real ``PROPFIND`` stays ``PROPFIND`` (405: no route has it);
- limits on the request head (bytes, header count) answered 431, counted on the raw reads too
  (llhttp hands over a header field only once it is complete), and a timeout for a request head
  (uvicorn's keep-alive timer stops at the first byte); trailer fields, ``Upgrade`` and
  ``CONNECT`` are refused (400), as is chunk framing out of proportion to the body;
- at most ``MAX_CONNECTIONS_PER_IP`` connections per client address (slow-client DoS);
- the verified TLS client certificate in the ASGI TLS extension (``scope["extensions"]["tls"]``);
- malformed requests answered with the API's JSON error body, never uvicorn's text, after the
  responses of any requests pipelined before them, then the connection is closed;
- on shutdown an idle keep-alive connection is dropped at once.

D19/D24 in docs/decisions.md: with h11, a ``/healthz`` cost 228 µs of server CPU; with this, 87 µs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections import Counter
from http import HTTPStatus
from typing import Any, ClassVar, Final, NoReturn

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from garrison.reasons import Reason

log = logging.getLogger("garrison.control.server")

TLS_VERSIONS: Final = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}  # ASGI TLS extension: tls_version
MAX_HEAD_BYTES: Final = 16 * 1024
MAX_HEADERS: Final = 100
HEAD_TIMEOUT_SECONDS: Final = 10.0  # a request head must be complete this long after its first byte
MAX_CONNECTIONS_PER_IP: Final = 128  # one host cannot hold every connection slot (slow-client DoS)
MAX_PIPELINED: Final = 8  # requests of one connection parsed but not yet answered (uvicorn: no cap)
WRITE_STALL_SECONDS: Final = 30.0  # a client that stops reading its responses is cut after this

_LIST: Final = b"LIST "
_STAND_IN: Final = b"PROPFIND "  # a method llhttp knows that no control-plane route has


class Refused(Exception):
    """Raised in a parser callback to stop the parse: the message is refused (``_refusal`` says why)."""


_BETWEEN, _HEAD, _BODY = 0, 1, 2
_HEAD_LIMITS: Final = f"the request head is limited to {MAX_HEAD_BYTES} bytes and {MAX_HEADERS} header fields"


def tls_extension(transport: Any) -> dict[str, Any] | None:
    """The ASGI TLS extension for a connection (the verified client leaf, PEM, if any)."""
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    der = sslobj.getpeercert(binary_form=True)
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": TLS_VERSIONS.get(sslobj.version() or ""),
        "cipher_suite": None,
    }


def error_response(reason: Reason, message: str) -> bytes:
    """A complete ``Connection: close`` response with the API's JSON error body."""
    body = json.dumps({"error": reason.value, "message": message}).encode()
    status = HTTPStatus(reason.status)
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\n"
        f"cache-control: no-store\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class CorkedTransport:
    """What a request cycle writes through: writes made in one event-loop turn leave as one.

    uvicorn writes a response head and its body separately: two TLS records, two ``send`` calls.
    Here they are joined and written when the response completes (``flush`` from the protocol),
    or at the end of the loop turn at the latest, so a streamed body is never held back. ``close``
    writes what is pending first. Measured: 115 -> 87 µs of server CPU per ``/healthz`` request.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # anything else a cycle may use: the real transport's
        return getattr(self._transport, name)


class ControlHttpProtocol(HttpToolsProtocol):
    """One client connection. The TLS handshake is complete when asyncio calls ``connection_made``:
    the peer certificate is read once there and put into the scope of every request."""

    per_ip: ClassVar[Counter[str]] = Counter()  # open connections by client IP, across the server
    _head_timer: asyncio.TimerHandle | None = None
    _ip: str = ""
    _tls: dict[str, Any] | None = None
    _partial = b""  # the first bytes of a message, too few to tell whether it is a LIST
    _list = False  # the message being parsed was a LIST
    # Where the parser is in the current message, and how many bytes it holds unparsed or as
    # framing: llhttp hands a header to uvicorn only once the field is complete (httptools joins
    # the pieces itself), so the head limit also counts raw bytes of reads that end mid-head.
    _phase = _BETWEEN
    _seq = 0  # messages begun on this connection
    _head_bytes = 0  # bytes of the URL and the completed header fields of this message
    _headers = 0
    _raw_head = 0  # bytes of whole reads that arrived while this message's head was incomplete
    _body_total = 0
    _body_in_read = 0
    _framing = 0  # chunk framing and trailer bytes of whole reads in this message's body
    _framing_run = 0  # the same, since the last read that carried body bytes
    _msg_cycle: Any = None  # the request cycle of the message being parsed (from its headers on)
    _done = False  # a message without keep-alive completed: nothing after it is parsed
    _write_timer: asyncio.TimerHandle | None = None
    _refusal: tuple[Reason, str] | None = None  # why a parser callback stopped the parse
    _deferred: bytes | None = None  # an error response waiting for earlier pipelined responses
    _outstanding = 0  # request cycles started or queued whose response has not completed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._cork = CorkedTransport(transport, self.loop)
        self._ip = self.client[0] if self.client else ""
        self.per_ip[self._ip] += 1
        if self.per_ip[self._ip] > MAX_CONNECTIONS_PER_IP:
            log.warning("refusing a connection from %s: %d open", self._ip, self.per_ip[self._ip] - 1)
            transport.abort()
            return
        self._tls = tls_extension(transport)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        if self._ip in self.per_ip:
            self.per_ip[self._ip] -= 1
            if self.per_ip[self._ip] <= 0:
                del self.per_ip[self._ip]
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deferred is not None or self._done or self.transport.is_closing():
            return  # refused, or the last message was "close": nothing more is parsed
        if self._phase == _BETWEEN:
            if self._partial:
                data, self._partial = self._partial + data, b""
            data = data.lstrip(b"\r\n")  # llhttp skips CRLFs between messages; so may we
            if not data:
                return
            if len(data) < len(_LIST) and _LIST.startswith(data):
                self._partial = data  # "LI": wait for the rest of the method
                return
            if data.startswith(_LIST):
                data = _STAND_IN + data[len(_LIST) :]
                self._list = True
        phase, seq = self._phase, self._seq
        self._body_in_read = 0
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:  # malformed, or a callback below refused the message
            self._send_error(*(self._refusal or (Reason.BAD_REQUEST, "malformed HTTP/1.1 request")))
            return
        except httptools.HttpParserUpgrade:  # pragma: no cover - refused in on_headers_complete
            self._send_error(Reason.BAD_REQUEST, "protocol upgrades are not supported")
            return
        if seq == self._seq and phase == self._phase:  # the whole read fell inside one phase
            if phase == _HEAD:
                self._raw_head += len(data)
                if self._raw_head > MAX_HEAD_BYTES:
                    self._send_error(Reason.HEADERS_TOO_LARGE, _HEAD_LIMITS)
                    return
            elif phase == _BODY:
                # Bytes that are not body: chunk sizes and extensions, trailers. A run of them
                # (no body byte in between) is a head-sized thing; in all, they stay in proportion.
                self._framing += len(data) - self._body_in_read
                self._framing_run = 0 if self._body_in_read else self._framing_run + len(data)
                if (
                    self._framing_run > MAX_HEAD_BYTES
                    or self._framing > MAX_HEAD_BYTES + 8 * self._body_total
                ):
                    self._send_error(Reason.BAD_REQUEST, "too much chunk framing or trailer data")
                    return
        self._watch_head()

    # -- parser callbacks ---------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEAD
        self._seq += 1
        self._head_bytes = self._headers = self._raw_head = self._body_total = self._framing = 0
        self._framing_run = 0
        self._msg_cycle = None
        if self._tls is not None:
            self.scope["extensions"] = {"tls": self._tls}  # type: ignore[dict-item]  # uvicorn types it narrowly

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._phase != _HEAD:  # after the head: a trailer field of a chunked body
            self._refuse(Reason.BAD_REQUEST, "trailer fields are not accepted")
        self._headers += 1
        self._count(len(name) + len(value) + 4)
        if self._headers > MAX_HEADERS:
            self._refuse(Reason.TOO_MANY_HEADERS, _HEAD_LIMITS)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.parser.should_upgrade():  # Upgrade or CONNECT: llhttp would stop parsing the body
            self._refuse(Reason.BAD_REQUEST, "protocol upgrades and CONNECT are not supported")
        if self._outstanding >= MAX_PIPELINED:  # uvicorn would queue every one of them
            self._refuse(Reason.BAD_REQUEST, f"at most {MAX_PIPELINED} pipelined requests")
        listed, self._list = self._list, False
        super().on_headers_complete()  # fills the scope and starts (or queues) the request's task
        self._phase = _BODY
        self._msg_cycle = self.cycle
        self._outstanding += 1
        if listed:
            self.scope["method"] = "LIST"
        self.cycle.transport = self._cork  # type: ignore[assignment]  # head and body: one TLS write

    def on_body(self, body: bytes) -> None:
        self._body_in_read += len(body)
        self._body_total += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = _BETWEEN
        if not self.parser.should_keep_alive():
            self._done = True  # uvicorn parses on (lenient_data_after_close) and would queue more

    def on_response_complete(self) -> None:
        self._cork.flush()
        self._outstanding -= 1
        super().on_response_complete()  # may start the next pipelined request
        if self._deferred is not None and not self._busy():
            resp, self._deferred = self._deferred, None
            self.transport.write(resp)
            self.transport.close()

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(Reason.HEADERS_TOO_LARGE, _HEAD_LIMITS)

    def _refuse(self, reason: Reason, message: str) -> NoReturn:
        """Stop the parse from inside a callback; ``data_received`` answers with this refusal."""
        self._refusal = (reason, message)
        raise Refused(message)

    # -- errors ---------------------------------------------------------------------------------------
    def _send_error(self, reason: Reason, message: str) -> None:
        """The API's JSON error, then close. Requests parsed before the bad one get their responses
        first: the error waits for them (reading paused), so nothing that ran goes unanswered. A
        message refused in its body already has a request cycle: it is dropped (its handler sees
        a disconnect and its response is discarded)."""
        cycle = self._msg_cycle if self._phase == _BODY else None
        if cycle is not None and not cycle.response_complete and not cycle.disconnected:
            if self.pipeline and self.pipeline[0][0] is cycle:
                self.pipeline.popleft()  # queued behind an earlier request: never started
            cycle.disconnected = True
            cycle.message_event.set()
            self._outstanding -= 1
        resp = error_response(reason, message)
        log.debug("refused a request from %s: %s", self._ip, message)
        if self._busy():
            self._deferred = resp
            self.transport.pause_reading()
            return
        self._cork.flush()
        self.transport.write(resp)
        self.transport.close()

    def _busy(self) -> bool:
        """An earlier request of this connection is still running or queued."""
        return self._outstanding > 0

    # -- a client that stops reading ------------------------------------------------------------------
    def pause_writing(self) -> None:
        """uvicorn waits for the write buffer to drain with no timeout: a client that never reads
        would hold its connection and a request task forever."""
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(WRITE_STALL_SECONDS, self._write_stalled)

    def resume_writing(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().resume_writing()

    def _write_stalled(self) -> None:
        self._write_timer = None
        log.info("dropping a connection from %s: it read nothing for %.0f s", self._ip, WRITE_STALL_SECONDS)
        self.transport.abort()

    def send_400_response(self, msg: str) -> None:  # uvicorn's name for the same thing
        self._send_error(Reason.BAD_REQUEST, "malformed HTTP/1.1 request")

    # -- the request-head timeout -------------------------------------------------------------------
    def _watch_head(self) -> None:
        waiting = self.cycle is None or self.cycle.response_complete  # no request being served
        if waiting and self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_timeout)
        elif not waiting:
            self._cancel_head_timer()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.abort()

    def shutdown(self) -> None:
        """As uvicorn's, but an idle connection is dropped at once: a TLS close would wait for the
        client's close_notify, which an idle keep-alive client (every gateway's puller) never sends
        until its next request, holding shutdown for the whole grace period."""
        idle = self.cycle is None or self.cycle.response_complete
        super().shutdown()
        if idle:
            self.transport.abort()


__all__ = [
    "HEAD_TIMEOUT_SECONDS",
    "MAX_CONNECTIONS_PER_IP",
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "MAX_PIPELINED",
    "WRITE_STALL_SECONDS",
    "ControlHttpProtocol",
    "CorkedTransport",
    "Refused",
    "error_response",
    "tls_extension",
]
