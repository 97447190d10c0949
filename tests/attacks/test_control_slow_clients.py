"""Slow clients cannot hold the control plane's connection slots (the reviewer's H1).

uvicorn's protocol has no timeout for a request head; garrison's protocol adds one, and caps
the connections one address may hold. Limits are lowered for the test; the server is real (TLS).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import garrison.control.protocol as protocol
from support.control import ControlPlaneThread


@pytest.fixture
def cp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ControlPlaneThread]:
    monkeypatch.setattr(protocol, "HEAD_TIMEOUT_SECONDS", 1.0)
    monkeypatch.setattr(protocol, "MAX_CONNECTIONS_PER_IP", 4)
    with ControlPlaneThread(tmp_path) as plane:
        yield plane


def tls_socket(cp: ControlPlaneThread) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", cp.port), timeout=5)
    return cp.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")


def closed_by_peer(s: ssl.SSLSocket, within: float) -> bool:
    s.settimeout(within)
    try:
        return s.recv(1024) == b""
    except (ConnectionResetError, ssl.SSLError, OSError) as exc:
        return not isinstance(exc, TimeoutError)


def test_a_half_sent_request_head_is_cut_after_the_head_timeout(cp: ControlPlaneThread) -> None:
    s = tls_socket(cp)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    start = time.monotonic()
    assert closed_by_peer(s, within=5)
    assert 0.8 < time.monotonic() - start < 4
    s.close()


def test_a_connection_that_sends_nothing_is_cut_too(cp: ControlPlaneThread) -> None:
    s = tls_socket(cp)
    assert closed_by_peer(s, within=5)
    s.close()


def test_slow_head_after_a_kept_alive_response_is_cut(cp: ControlPlaneThread) -> None:
    s = tls_socket(cp)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    got = b""
    while b'{"status":"ok"}' not in got:
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    assert got.startswith(b"HTTP/1.1 200")
    s.sendall(b"GET /healthz HTTP/1.1\r\n")  # the second head never completes
    assert closed_by_peer(s, within=5)
    s.close()


def test_one_address_cannot_take_every_connection(cp: ControlPlaneThread) -> None:
    held = [tls_socket(cp) for _ in range(4)]
    try:
        # The fifth is refused once its handshake is done: the server drops it without an answer.
        extra = tls_socket(cp)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_by_peer(extra, within=5)
        extra.close()
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)  # the slots are released as the connections close
    with cp.client() as c:
        assert c.get("/healthz").status_code == 200
