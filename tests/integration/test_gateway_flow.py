"""The gateway end to end over real sockets: the seed rule, keep-alive, streaming, errors, headers."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx

from support.gateway import TD, GatewayThread, Signer
from support.raw import count_responses, exchange, status_of


def test_seed_rule_allows_microservice2_only(gateway: GatewayThread, signer: Signer) -> None:
    url = gateway.url + "/microservice1/getData"
    assert httpx.get(url).status_code == 401
    ok = httpx.get(url, headers={"Authorization": f"Bearer {signer.svc('microservice2')}"})
    assert ok.status_code == 200
    assert ok.json()["headers"]["x-garrison-principal"] == f"spiffe://{TD}/svc/microservice2"
    other = httpx.get(url, headers={"Authorization": f"Bearer {signer.svc('microservice3')}"})
    assert other.status_code == 403
    assert other.json()["error"] == "policy_no_match"
    user = httpx.get(url, headers={"Authorization": f"Bearer {signer.token('alice')}"})
    assert user.status_code == 403
    wrong_method = httpx.post(url, headers={"Authorization": f"Bearer {signer.svc('microservice2')}"})
    assert wrong_method.status_code == 405


def test_error_bodies_are_json_with_request_id_and_no_detail(gateway: GatewayThread) -> None:
    r = httpx.get(gateway.url + "/microservice1/getData", headers={"Authorization": "Bearer not.a.jwt"})
    assert r.status_code == 401
    body = r.json()
    assert set(body) == {"error", "request_id"}
    assert body["request_id"] == r.headers["x-request-id"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "server" not in r.headers


def test_no_route_is_404_without_detail(gateway: GatewayThread) -> None:
    r = httpx.get(gateway.url + "/nope")
    assert r.status_code == 404
    assert r.json()["error"] == "no_route"


def test_upstream_5xx_is_masked(gateway: GatewayThread) -> None:
    r = httpx.get(gateway.url + "/microservice1/crash")
    assert r.status_code == 500
    assert "Traceback" not in r.text and "db_password" not in r.text
    assert r.json()["error"] == "upstream_error_masked"


def test_responses_carry_security_headers_and_no_banner(gateway: GatewayThread) -> None:
    r = httpx.get(gateway.url + "/public/x")
    assert r.status_code == 200
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "server" not in r.headers  # the demo app sends `server: demo-app/1.0`
    assert "strict-transport-security" not in r.headers  # plain HTTP: HSTS only over TLS


def test_traceparent_propagated_with_new_parent_and_request_id_set(gateway: GatewayThread) -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = httpx.get(gateway.url + "/public/x", headers={"traceparent": tp})
    seen = r.json()["headers"]
    assert seen["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert seen["traceparent"] != tp
    assert seen["x-request-id"] == r.headers["x-request-id"]
    fresh = httpx.get(gateway.url + "/public/x", headers={"traceparent": "garbage"}).json()["headers"]
    assert len(fresh["traceparent"]) == 55 and "garbage" not in fresh["traceparent"]


def test_keep_alive_and_pipelining_answer_in_order(gateway: GatewayThread) -> None:
    reqs = (
        b"".join(b"GET /public/%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(5))
        + b"GET /public/last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    resp, closed = exchange(gateway.port, reqs)
    assert count_responses(resp) == 6
    paths = [
        json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["path"]
        for part in resp.split(b"HTTP/1.1 200")[1:]
    ]
    assert paths == ["/public/0", "/public/1", "/public/2", "/public/3", "/public/4", "/public/last"]
    assert closed


def test_request_body_streams_to_upstream(gateway: GatewayThread) -> None:
    body = b"x" * 300_000
    r = httpx.post(gateway.url + "/public/upload", content=body)
    assert r.status_code == 200
    assert r.json()["body_bytes"] == len(body)

    def gen():  # chunked upload
        for _ in range(10):
            yield b"y" * 10_000

    r = httpx.post(gateway.url + "/public/upload", content=gen())
    assert r.json()["body_bytes"] == 100_000


def test_body_over_limit_is_413(gateway: GatewayThread) -> None:
    r = httpx.post(gateway.url + "/public/upload", content=b"x" * (1024 * 1024 + 1))
    assert r.status_code == 413
    assert r.json()["error"] == "body_too_large"


def test_chunked_body_over_limit_is_413(gateway: GatewayThread) -> None:
    def gen():
        for _ in range(40):
            yield b"z" * 65536

    try:
        r = httpx.post(gateway.url + "/public/upload", content=gen())
    except httpx.HTTPError:
        return  # the gateway may cut the connection while we still send: also a refusal
    assert r.status_code == 413


def test_oversized_headers_are_431(gateway: GatewayThread) -> None:
    r = httpx.get(gateway.url + "/public/x", headers={"X-Big": "a" * 9000})
    assert r.status_code == 431


def test_slow_header_is_timed_out(gateway: GatewayThread) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(b"GET /public/x HTTP/1.1\r\nHost: t\r\n")  # never finishes the head (slowloris)
        start = time.monotonic()
        data = s.recv(4096)
        elapsed = time.monotonic() - start
    assert status_of(data) == 408
    assert elapsed < 5


def test_idle_keepalive_connection_is_closed(gateway: GatewayThread) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=15) as s:
        start = time.monotonic()
        assert s.recv(1) == b""
        assert time.monotonic() - start < 8


def test_upstream_down_is_502(tmp_path: Path, signer: Signer) -> None:
    from support.gateway import base_config

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    gw = GatewayThread(tmp_path, lambda _p: base_config(signer, dead)).start()
    try:
        r = httpx.get(gw.url + "/public/x")
        assert r.status_code == 502
        assert r.json()["error"] == "upstream_connect_failed"
    finally:
        gw.stop()


def test_decision_log_records_allows_and_denies(
    gateway: GatewayThread, signer: Signer, tmp_path: Path
) -> None:
    httpx.get(gateway.url + "/microservice1/getData")
    httpx.get(
        gateway.url + "/microservice1/getData",
        headers={"Authorization": f"Bearer {signer.svc('microservice2')}"},
    )
    httpx.get(gateway.url + "/public/x?token=secret-in-query")
    gateway.stop()  # flushes the log
    lines = [json.loads(x) for x in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [x["decision"] for x in lines] == ["deny", "allow", "allow"]
    assert lines[0]["reason"] == "authn_required" and lines[0]["stage"] == "authn"
    assert lines[1]["rule"] == "ms2-reads-ms1" and lines[1]["principal"].endswith("/svc/microservice2")
    raw = (tmp_path / "decisions.jsonl").read_text()
    assert "secret-in-query" not in raw and "eyJ" not in raw


def test_metrics_count_requests_and_decisions(gateway: GatewayThread) -> None:
    httpx.get(gateway.url + "/public/x")
    httpx.get(gateway.url + "/microservice1/getData")
    text = httpx.get(gateway.admin_url + "/metrics").text
    assert 'garrison_requests_total{code_class="2xx",route="public"} 1.0' in text
    assert 'garrison_decisions_total{mode="enforce",reason="authn_required",stage="authn"} 1.0' in text


def test_parse_level_rejects_are_recorded(gateway: GatewayThread, tmp_path: Path) -> None:
    exchange(
        gateway.port, b"GET /public/x HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n"
    )  # obs-fold: llhttp rejects
    gateway.stop()
    lines = [json.loads(x) for x in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert lines[-1]["decision"] == "deny" and lines[-1]["stage"] == "hygiene" and lines[-1]["status"] == 400


def test_upstream_timeout_is_504(tmp_path: Path, signer: Signer) -> None:
    from support.gateway import base_config

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts, never answers
    try:
        port = silent.getsockname()[1]
        gw = GatewayThread(tmp_path, lambda _p: base_config(signer, port)).start()
        try:
            start = time.monotonic()
            r = httpx.get(gw.url + "/public/x", timeout=20)
            assert r.status_code == 504
            assert r.json()["error"] == "upstream_timeout"
            assert time.monotonic() - start < 10  # upstream_timeout is 3 s in the test config
        finally:
            gw.stop()
    finally:
        silent.close()


def test_connections_beyond_the_limit_are_refused(tmp_path: Path, signer: Signer) -> None:
    from support.gateway import base_config

    gw = GatewayThread(
        tmp_path,
        lambda p: base_config(signer, p).replace(
            "max_header_bytes: 8192", "max_header_bytes: 8192, max_connections: 2"
        ),
    ).start()
    try:
        held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(2)]
        time.sleep(0.2)
        try:
            resp, closed = exchange(gw.port, b"GET /public/x HTTP/1.1\r\nHost: t\r\n\r\n")
            assert status_of(resp) == 503 and closed
        except ConnectionResetError:
            pass  # refused before our request was read: also a refusal (the 503 was written, then RST)
        for s in held:
            s.close()
        time.sleep(0.2)
        assert httpx.get(gw.url + "/public/x").status_code == 200
    finally:
        gw.stop()


def test_open_connections_gauge_follows_connections(gateway: GatewayThread) -> None:
    def gauge() -> float:
        text = httpx.get(gateway.admin_url + "/metrics").text
        line = next(x for x in text.splitlines() if x.startswith("garrison_connections_open "))
        return float(line.split()[1])

    base = gauge()
    held = [socket.create_connection(("127.0.0.1", gateway.port)) for _ in range(3)]
    time.sleep(0.2)
    assert gauge() == base + 3
    for s in held:
        s.close()
    time.sleep(0.2)
    assert gauge() == base
