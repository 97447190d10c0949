"""Requests forwarded on a pooled keep-alive upstream connection (the server's callback path)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from support.gateway import GatewayThread, Signer, base_config
from support.raw import status_of

OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"


def _upstream(answers: list[bytes | None]) -> tuple[socket.socket, threading.Event]:
    """One keep-alive connection at a time; the n-th request gets answers[n] (None: no answer, hang)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    done = threading.Event()
    served = iter(answers)

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                while not done.is_set():
                    try:
                        if not conn.recv(65536):
                            break
                    except OSError:
                        break
                    answer = next(served, None)
                    if answer is None:
                        done.wait(10)  # hang: the gateway's upstream timeout must fire
                        break
                    conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return srv, done


def _get(s: socket.socket) -> bytes:
    s.sendall(b"GET /public/x HTTP/1.1\r\nHost: t\r\n\r\n")
    return s.recv(65536)


def test_pooled_requests_are_answered_and_a_hung_upstream_times_out(tmp_path: Path, signer: Signer) -> None:
    srv, done = _upstream([OK, OK, None])
    gw = GatewayThread(tmp_path, lambda _p: base_config(signer, srv.getsockname()[1])).start()
    try:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
            first, second = _get(s), _get(s)  # the second goes on the pooled connection
            assert status_of(first) == 200 and first.endswith(b"ok")
            assert status_of(second) == 200 and second.endswith(b"ok")
            assert b"x-request-id: " in second and b"x-content-type-options: nosniff" in second
            start = time.monotonic()
            third = _get(s)
            assert status_of(third) == 504
            assert b'"error":"upstream_timeout"' in third
            assert time.monotonic() - start < 6  # upstream_timeout is 3 s in the test config
    finally:
        done.set()
        srv.close()
        gw.stop()


def test_pooled_upstream_breaking_mid_response_is_502_when_nothing_was_sent(
    tmp_path: Path, signer: Signer
) -> None:
    srv, done = _upstream([OK, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nbad header\r\n\r\nhello"])
    gw = GatewayThread(tmp_path, lambda _p: base_config(signer, srv.getsockname()[1])).start()
    try:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
            assert status_of(_get(s)) == 200
            broken = _get(s)  # an invalid header line on the pooled connection
            assert status_of(broken) == 502
            assert b'"error":"upstream_bad_response"' in broken
    finally:
        done.set()
        srv.close()
        gw.stop()
