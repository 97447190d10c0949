"""Raw-socket HTTP for tests that must send what well-behaved clients refuse to (smuggling, bad framing)."""

from __future__ import annotations

import socket


def exchange(port: int, data: bytes, *, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data``, read until the server closes or goes quiet. Returns (bytes, closed_by_server)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        closed = False
        s.settimeout(timeout)
        while True:
            try:
                b = s.recv(65536)
            except TimeoutError:
                break
            if not b:
                closed = True
                break
            chunks.append(b)
            s.settimeout(0.5)  # after the first bytes, a short quiet period ends the read
        return b"".join(chunks), closed


def status_of(response: bytes) -> int:
    line = response.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def count_responses(response: bytes) -> int:
    return response.count(b"HTTP/1.1 ")
