"""The control plane's HTTP/1.1 protocol over real TLS sockets: LIST through llhttp, head limits,
malformed requests answered with the API's JSON errors, pipelining, one write per response."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import garrison.control.protocol as protocol
from garrison.control.protocol import MAX_HEAD_BYTES, MAX_HEADERS, MAX_PIPELINED
from support.control import ControlPlaneThread


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneThread]:
    with ControlPlaneThread(tmp_path_factory.mktemp("cp")) as plane:
        yield plane


def tls(cp: ControlPlaneThread) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", cp.port), timeout=10)
    return cp.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")


def read_responses(s: ssl.SSLSocket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` responses (each with a Content-Length body) or as many as came before EOF."""
    out: list[tuple[int, dict[str, str], bytes]] = []
    with contextlib.suppress(ssl.SSLEOFError, ConnectionResetError):  # closed after the last answer
        _read_into(s, count, out)
    return out


def _read_into(s: ssl.SSLSocket, count: int, out: list[tuple[int, dict[str, str], bytes]]) -> None:
    buf = b""
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        n = int(headers.get("content-length", "0"))
        while len(buf) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        out.append((status, headers, buf[:n]))
        buf = buf[n:]


def list_request(cp: ControlPlaneThread, path: str = "/v1/svids") -> bytes:
    return f"LIST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {cp.admin_token}\r\n\r\n".encode()


def test_list_split_across_reads_is_still_list(cp: ControlPlaneThread) -> None:
    """The method arrives in pieces ("LI", then the rest): it is still LIST, not a parse error."""
    s = tls(cp)
    req = list_request(cp)
    s.sendall(req[:2])
    time.sleep(0.2)
    s.sendall(req[2:4])
    time.sleep(0.2)
    s.sendall(req[4:])
    [(status, _, body)] = read_responses(s, 1)
    s.close()
    assert status == 200 and "svids" in json.loads(body)


def test_list_after_other_requests_on_a_kept_alive_connection(cp: ControlPlaneThread) -> None:
    s = tls(cp)
    healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    for req in (healthz, list_request(cp), list_request(cp, "/v1/clients")):
        s.sendall(req)
        [(status, _, body)] = read_responses(s, 1)
        assert status == 200, body
    s.close()


def test_a_real_propfind_is_not_taken_for_list(cp: ControlPlaneThread) -> None:
    s = tls(cp)
    auth = f"Authorization: Bearer {cp.admin_token}"
    s.sendall(f"PROPFIND /v1/svids HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n".encode())
    [(status, headers, body)] = read_responses(s, 1)
    s.close()
    assert status == 405 and json.loads(body)["error"] == "method_not_allowed"
    assert "LIST" in headers["allow"]


def test_pipelined_requests_are_answered_in_order(cp: ControlPlaneThread) -> None:
    s = tls(cp)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3 + b"GET /v1/bundle HTTP/1.1\r\nHost: x\r\n\r\n")
    got = read_responses(s, 4)
    s.close()
    assert [st for st, _, _ in got] == [200, 200, 200, 200]
    assert [json.loads(b).get("status") for _, _, b in got[:3]] == ["ok"] * 3
    assert "keys" in json.loads(got[3][2])


def test_a_pipelined_list_behind_another_request_is_refused_cleanly(cp: ControlPlaneThread) -> None:
    """Documented limit: LIST is recognized at the start of a read only. llhttp refuses a LIST
    pipelined behind another request in the same read: the first request is answered, then the
    LIST gets a JSON 400 and the connection closes; nothing hangs and the server keeps serving."""
    s = tls(cp)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + list_request(cp))
    got = read_responses(s, 3)
    s.close()
    assert [st for st, _, _ in got] == [200, 400]
    assert json.loads(got[1][2])["error"] == "bad_request" and got[1][1]["connection"] == "close"
    with cp.client() as c:
        assert c.request("LIST", "/v1/clients", headers=cp.admin_headers).status_code == 200


def test_a_request_before_a_malformed_one_is_run_and_answered(cp: ControlPlaneThread) -> None:
    """A state-changing request pipelined before garbage runs and its 201/200 reaches the client
    before the 400: a client never sees "failed" for something that happened."""
    s = tls(cp)
    body = json.dumps({"spiffe_id": "spiffe://test.local/svc/pipelined"}).encode()
    put = (
        b"POST /v1/join-tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {cp.admin_token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    s.sendall(put + b"G\x00T / HTTP/1.1\r\n\r\n")
    got = read_responses(s, 3)
    s.close()
    assert [st for st, _, _ in got] == [201, 400]
    assert json.loads(got[0][2])["spiffe_id"] == "spiffe://test.local/svc/pipelined"


STREAM_LIMIT = 64 * 1024 * 1024  # far more than loopback's kernel buffers can hold in flight


def stream_until_closed(s: ssl.SSLSocket, first: bytes, filler: bytes) -> tuple[bool, int, bytes]:
    """Send ``first`` then ``filler`` repeatedly until the server answers or closes, STREAM_LIMIT
    bytes went out, or 8 s passed. Returns (whether the server stopped the stream, bytes sent,
    what came back). "Sent" includes what the kernel buffers held when the server closed (a few
    MB on loopback). A server that closes while the client still sends may reset the connection
    before its answer is read: ``got`` may be empty."""
    s.sendall(first)
    sent = len(first)
    s.setblocking(False)
    got = b""
    stopped = False
    deadline = time.monotonic() + 8
    try:
        while sent < STREAM_LIMIT and time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
                got += chunk
                if got or not chunk:
                    stopped = True
                    break
            except (ssl.SSLWantReadError, BlockingIOError):
                pass
            try:
                sent += s.send(filler)
            except (ssl.SSLWantWriteError, BlockingIOError):
                time.sleep(0.01)
        s.settimeout(5)
        while b"\r\n\r\n" not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except (ssl.SSLError, OSError):
        stopped = True  # reset or closed: the server stopped taking the stream
    finally:
        s.close()
    return stopped, sent, got


def test_a_header_value_streamed_across_reads_is_cut_at_the_head_limit(cp: ControlPlaneThread) -> None:
    """llhttp hands over a header only once complete; the raw bytes of an unfinished head count."""
    stopped, sent, got = stream_until_closed(tls(cp), b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: ", b"a" * 4096)
    assert stopped and sent < STREAM_LIMIT // 2, f"{sent} bytes went in and the stream was not stopped"
    assert got == b"" or (got.startswith(b"HTTP/1.1 431") and b"headers_too_large" in got), got[:200]


def test_trailer_fields_are_refused_and_cannot_grow(cp: ControlPlaneThread) -> None:
    head = (
        b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\na=b\r\n0\r\nX-Trailer: "
    )
    stopped, sent, got = stream_until_closed(tls(cp), head, b"a" * 4096)
    assert stopped and sent < STREAM_LIMIT // 2, f"{sent} bytes went in and the stream was not stopped"
    assert got == b"" or got.startswith(b"HTTP/1.1 400"), got[:200]
    s = tls(cp)
    s.sendall(head + b"v\r\n\r\n")  # a complete trailer: refused as such
    got2 = read_responses(s, 2)
    s.close()
    assert [st for st, _, _ in got2] == [400] and b"trailer" in got2[0][2]
    s = tls(cp)  # behind a pipelined request: that one is answered first, the refused one never runs
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + head + b"v\r\n\r\n")
    got3 = read_responses(s, 3)
    s.close()
    assert [st for st, _, _ in got3] == [200, 400]


@pytest.mark.parametrize(
    "head",
    [
        b"POST /v1/bundle HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\nContent-Length: ",
        b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: x\r\nContent-Length: ",
    ],
    ids=["upgrade", "connect"],
)
def test_upgrade_and_connect_are_refused_without_parsing_the_body_as_requests(
    cp: ControlPlaneThread, head: bytes
) -> None:
    """llhttp stops at an upgrade and would read the declared body as new requests (a desync)."""
    smuggled = list_request(cp)
    s = tls(cp)
    s.sendall(head + str(len(smuggled)).encode() + b"\r\n\r\n")
    time.sleep(0.2)
    with contextlib.suppress(OSError):
        s.sendall(smuggled)
    got = read_responses(s, 3)
    s.close()
    assert [st for st, _, _ in got] == [400], got
    assert b"svids" not in b"".join(b for _, _, b in got)


MANY_HEADERS = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))


@pytest.mark.parametrize(
    ("head", "status", "error"),
    [
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n",
                     431, "headers_too_large", id="big-header"),
        pytest.param(b"GET /" + b"a" * (MAX_HEAD_BYTES + 1) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                     431, "headers_too_large", id="big-url"),
        pytest.param(b"GET /healthz HTTP/1.1\r\n" + MANY_HEADERS + b"\r\n", 431, "too_many_headers",
                     id="many-headers"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                     400, "bad_request", id="two-content-lengths"),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Length: 3\r\n\r\n", 400, "bad_request", id="cl-and-te"),
        pytest.param(b"G\x00T / HTTP/1.1\r\n\r\n", 400, "bad_request", id="garbage-method"),
    ],
)  # fmt: skip
def test_bad_heads_get_a_json_error_and_the_connection_closes(
    cp: ControlPlaneThread, head: bytes, status: int, error: str
) -> None:
    s = tls(cp)
    s.sendall(head)
    got = read_responses(s, 2)
    s.close()
    assert len(got) == 1, "nothing after the error: the connection is closed"
    st, headers, body = got[0]
    assert (st, json.loads(body)["error"]) == (status, error)
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert b"Traceback" not in body


def test_the_server_still_serves_after_bad_heads(cp: ControlPlaneThread) -> None:
    with cp.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}


def test_a_response_head_and_body_leave_in_one_tls_record(cp: ControlPlaneThread) -> None:
    """The corked transport: one ``recv`` after the request returns the whole small response (two
    writes would be two TLS records; a TLS socket's recv returns one record at most)."""
    s = tls(cp)
    for _ in range(3):
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = s.recv(65536)
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b'{"status":"ok"}'), data
    s.close()


def test_head_request_and_204_are_written_without_a_body(cp: ControlPlaneThread, tmp_path: Path) -> None:
    """Responses with a head only still leave (flushed when the response completes)."""
    s = tls(cp)
    s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    data = s.recv(65536)
    s.close()
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\n")


def test_leading_crlf_before_a_list_is_skipped(cp: ControlPlaneThread) -> None:
    s = tls(cp)
    s.sendall(b"\r\n\r\n" + list_request(cp))
    [(status, _, body)] = read_responses(s, 1)
    s.close()
    assert status == 200 and "svids" in json.loads(body)


def test_pipelined_requests_are_capped(cp: ControlPlaneThread) -> None:
    """uvicorn queues every pipelined request it parses (a review grew a server to 1.1 GB with one
    connection): past MAX_PIPELINED unanswered ones, the connection gets a 400 after their answers."""
    s = tls(cp)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * (MAX_PIPELINED + 12))
    got = read_responses(s, MAX_PIPELINED + 12)
    s.close()
    assert [st for st, _, _ in got] == [200] * MAX_PIPELINED + [400]
    assert b"pipelined" in got[-1][2]


def test_nothing_after_a_connection_close_request_is_run(cp: ControlPlaneThread) -> None:
    body = json.dumps({"spiffe_id": "spiffe://test.local/svc/after-close"}).encode()
    after = (
        b"POST /v1/join-tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {cp.admin_token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    s = tls(cp)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + after)
    got = read_responses(s, 2)
    s.close()
    assert [st for st, _, _ in got] == [200]
    time.sleep(0.2)
    assert "after-close" not in cp.audit_path.read_text()


def test_a_trailer_after_a_large_body_is_cut_at_the_head_limit(cp: ControlPlaneThread) -> None:
    """The framing budget is per run of non-body bytes, not a share of the body already sent."""
    chunk = b"a" * 65536
    head = (
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 16
        + b"0\r\nX-Trailer: "
    )
    stopped, sent, _ = stream_until_closed(tls(cp), head, b"a" * 4096)
    assert stopped and sent < STREAM_LIMIT // 2, f"{sent - len(head)} trailer bytes went in, not stopped"


def test_a_client_that_never_reads_is_dropped(
    cp: ControlPlaneThread, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn waits for a full write buffer to drain with no timeout; garrison cuts the client."""
    monkeypatch.setattr(protocol, "WRITE_STALL_SECONDS", 1.0)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # little kernel buffering
    raw.settimeout(10)
    raw.connect(("127.0.0.1", cp.port))
    s = cp.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")
    s.setblocking(False)
    deadline = time.monotonic() + 10
    closed = False
    with caplog.at_level("INFO", logger="garrison.control.server"):
        while time.monotonic() < deadline and not closed:
            try:
                s.send(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")  # one at a time; never read
            except (ssl.SSLWantWriteError, BlockingIOError):
                pass
            except OSError:
                closed = True
            time.sleep(0.02)
            closed = closed or "read nothing" in caplog.text
    s.close()
    assert closed and "read nothing" in caplog.text, "the server kept a connection whose client reads nothing"
