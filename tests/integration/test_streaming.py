"""Bodies stream both ways with bounded memory; a stalled request body is timed out."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from pathlib import Path

import httpx

from support.gateway import GatewayThread, Signer, base_config
from support.raw import status_of


def _streaming_upstream(total: int, chunk: int) -> tuple[socket.socket, threading.Event]:
    """Answers every request with `total` bytes in chunked encoding, `chunk` bytes at a time."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                sent = 0
                block = bytes(range(256)) * (chunk // 256)
                while sent < total:
                    part = block[: min(chunk, total - sent)]
                    conn.sendall(b"%x\r\n%s\r\n" % (len(part), part))
                    sent += len(part)
                conn.sendall(b"0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return srv, done


def test_large_chunked_response_streams_through(tmp_path: Path, signer: Signer) -> None:
    total, chunk = 8 * 1024 * 1024, 64 * 1024
    srv, done = _streaming_upstream(total, chunk)
    gw = GatewayThread(tmp_path, lambda _p: base_config(signer, srv.getsockname()[1])).start()
    try:
        digest = hashlib.sha256()
        received = 0
        with httpx.stream("GET", gw.url + "/public/big", timeout=30) as r:
            assert r.status_code == 200
            assert r.headers["transfer-encoding"] == "chunked"
            for part in r.iter_raw():
                digest.update(part)
                received += len(part)
        block = bytes(range(256)) * (chunk // 256)
        expected = hashlib.sha256(block * (total // chunk)).hexdigest()
        assert received == total
        assert digest.hexdigest() == expected
    finally:
        done.set()
        srv.close()
        gw.stop()


def test_stalled_request_body_is_timed_out(gateway: GatewayThread) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(b"POST /public/x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        start = time.monotonic()
        data = s.recv(4096)
        elapsed = time.monotonic() - start
        assert status_of(data) == 408
        assert elapsed < 6  # body_timeout is 2 s in the test config
        s.settimeout(2)
        assert s.recv(1) == b""  # and the connection is closed
