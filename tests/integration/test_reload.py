"""Hot reload: a good config takes effect, a bad one keeps the old running, in-flight requests finish."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from support.gateway import GatewayThread, Signer, base_config

OPEN_GETDATA = """
  - name: everyone-reads-ms1
    routes: [ms1-getdata]
    from: {authenticated: true}
"""


def _with_extra_policy(text: str) -> str:
    return text.replace("policies:\n", "policies:\n" + OPEN_GETDATA, 1)


def test_good_reload_takes_effect(gateway: GatewayThread, signer: Signer) -> None:
    url = gateway.url + "/microservice1/getData"
    auth = {"Authorization": f"Bearer {signer.svc('microservice3')}"}
    assert httpx.get(url, headers=auth).status_code == 403
    assert gateway.reload(_with_extra_policy(gateway.config_path.read_text()))
    assert httpx.get(url, headers=auth).status_code == 200


def test_bad_reload_keeps_old_config(gateway: GatewayThread, signer: Signer, caplog) -> None:  # type: ignore[no-untyped-def]
    url = gateway.url + "/microservice1/getData"
    auth = {"Authorization": f"Bearer {signer.svc('microservice2')}"}
    good = gateway.config_path.read_text()
    for bad in (
        good + "\nunknown_key: 1\n",
        good.replace("path: /admin/**", "path: /microservice1/**"),  # overlaps ms1-getdata
        good.replace("from: {services: [microservice2]}", "from: {services: [nosuch]}"),
        "routes: [",
    ):
        assert gateway.reload(bad) is False
        assert httpx.get(url, headers=auth).status_code == 200
    assert "config reload rejected" in caplog.text


def test_in_flight_request_finishes_on_its_config(tmp_path: Path, signer: Signer) -> None:
    """A slow upstream holds a request open while the route disappears from the config."""
    slow = socket.socket()
    slow.bind(("127.0.0.1", 0))
    slow.listen()
    port = slow.getsockname()[1]
    release = threading.Event()

    def serve_slowly() -> None:
        conn, _ = slow.accept()
        with conn:
            conn.recv(65536)
            release.wait(10)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow")

    threading.Thread(target=serve_slowly, daemon=True).start()
    gw = GatewayThread(tmp_path, lambda _p: base_config(signer, port)).start()
    try:
        result: dict[str, object] = {}

        def client() -> None:
            r = httpx.get(gw.url + "/public/x", timeout=10)
            result["status"], result["body"] = r.status_code, r.text

        t = threading.Thread(target=client)
        t.start()
        time.sleep(0.3)
        without_public = gw.config_path.read_text().replace(
            "  - name: public\n    path: /public/**", "  - name: public\n    path: /gone/**"
        )
        assert gw.reload(without_public)
        release.set()
        t.join(10)
        assert result == {"status": 200, "body": "slow"}
        assert httpx.get(gw.url + "/public/x").status_code == 404  # new requests see the new config
    finally:
        release.set()
        gw.stop()
        slow.close()


def test_file_change_is_picked_up_by_the_watcher(gateway: GatewayThread, signer: Signer) -> None:
    url = gateway.url + "/microservice1/getData"
    auth = {"Authorization": f"Bearer {signer.svc('microservice3')}"}
    assert gateway.gateway is not None
    gateway.loop.call_soon_threadsafe(gateway.gateway.start_watching, 0.1)
    gateway.config_path.write_text(_with_extra_policy(gateway.config_path.read_text()))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and httpx.get(url, headers=auth).status_code != 200:
        time.sleep(0.1)
    assert httpx.get(url, headers=auth).status_code == 200


def test_cli_gateway_reloads_on_sighup_and_drains_on_sigterm(tmp_path: Path, signer: Signer) -> None:
    from garrison.demo.upstream import start_echo_upstream

    loop = asyncio.new_event_loop()
    up = loop.run_until_complete(start_echo_upstream())
    threading.Thread(target=loop.run_forever, daemon=True).start()
    up_port = up.sockets[0].getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        gw_port = s.getsockname()[1]
    cfg = tmp_path / "garrison.yaml"
    text = base_config(signer, up_port).replace(
        'address: "127.0.0.1:0", limits', f'address: "127.0.0.1:{gw_port}", limits'
    )
    text = text.replace('admin: {address: "127.0.0.1:0"}', "admin: null")
    cfg.write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "garrison.cli.main", "gateway", "--config", str(cfg), "--no-watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{gw_port}/microservice1/getData"
        auth = {"Authorization": f"Bearer {signer.svc('microservice3')}"}
        deadline = time.monotonic() + 10
        status = 0
        while time.monotonic() < deadline:
            try:
                status = httpx.get(url, headers=auth).status_code
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert status == 403
        cfg.write_text(_with_extra_policy(text))
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and httpx.get(url, headers=auth).status_code != 200:
            time.sleep(0.05)
        assert httpx.get(url, headers=auth).status_code == 200
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert "config reloaded" in out and "shutting down" in out
    finally:
        if proc.poll() is None:
            proc.kill()
        loop.call_soon_threadsafe(loop.stop)
