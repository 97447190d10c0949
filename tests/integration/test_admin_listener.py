"""The admin listener over a real loopback socket: /metrics, /healthz, /readyz, 404, 405."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from garrison.telemetry.admin import AdminServer, split_address, start_admin
from garrison.telemetry.metrics import GatewayMetrics

Check = Callable[[AdminServer, httpx.AsyncClient], Awaitable[None]]


def run(check: Check, ready: Callable[[], bool] = lambda: True, address: str = "127.0.0.1:0") -> None:
    metrics = GatewayMetrics(routes=["api"], process_metrics=False)
    metrics.record_request("api", 200, 0.002, "pipeline", "allowed")

    async def main() -> None:
        server = await start_admin(address, metrics.registry, ready)
        try:
            base = f"http://127.0.0.1:{server.port}"
            async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=5) as client:
                await check(server, client)
        finally:
            await server.close()

    asyncio.run(main())


def test_should_serve_metrics_in_prometheus_text_format() -> None:
    async def check(server: AdminServer, client: httpx.AsyncClient) -> None:
        r = await client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"] == CONTENT_TYPE_LATEST
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(r.text)
            for s in f.samples
        }
        assert samples[("garrison_requests_total", (("code_class", "2xx"), ("route", "api")))] == 1
        assert samples[("garrison_request_duration_seconds_count", (("route", "api"),))] == 1
        r = await client.get("/metrics?name[]=garrison_requests_total")  # a query string is ignored
        assert r.status_code == 200

    run(check)


def test_should_answer_healthz() -> None:
    async def check(server: AdminServer, client: httpx.AsyncClient) -> None:
        r = await client.get("/healthz")
        assert (r.status_code, r.text) == (200, "ok\n")

    run(check)


def test_should_answer_readyz_from_the_ready_callable() -> None:
    state = {"ready": False}

    async def check(server: AdminServer, client: httpx.AsyncClient) -> None:
        assert (await client.get("/readyz")).status_code == 503
        state["ready"] = True
        r = await client.get("/readyz")
        assert (r.status_code, r.text) == (200, "ok\n")

    run(check, ready=lambda: state["ready"])


def test_should_answer_503_when_the_ready_callable_raises() -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    async def check(server: AdminServer, client: httpx.AsyncClient) -> None:
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert "boom" not in r.text

    run(check, ready=broken)


@pytest.mark.parametrize("path", ["/", "/metrics/", "/admin", "/healthz/x"])
def test_should_answer_404_for_unknown_paths(path: str) -> None:
    async def check(server: AdminServer, client: httpx.AsyncClient) -> None:
        assert (await client.get(path)).status_code == 404

    run(check)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD"])
def test_should_answer_405_for_methods_other_than_get(method: str) -> None:
    async def check(server: AdminServer, client: httpx.AsyncClient) -> None:
        r = await client.request(
            method, "/metrics", content=b"x" * 100 if method in ("POST", "PUT") else None
        )
        assert r.status_code == 405
        assert r.headers["allow"] == "GET"

    run(check)


def test_should_answer_400_for_a_garbled_request_line() -> None:
    async def check(server: AdminServer, client: httpx.AsyncClient) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"NONSENSE\r\n\r\n")
        reply = await reader.read()
        writer.close()
        assert reply.startswith(b"HTTP/1.1 400 ")

    run(check)


def test_should_bind_loopback_only_and_pick_a_free_port() -> None:
    async def check(server: AdminServer, client: httpx.AsyncClient) -> None:
        assert server.host == "127.0.0.1"
        assert server.port > 0

    run(check)
    run(check, address="localhost:0")


def test_should_stop_listening_on_close_even_with_an_idle_connection_open() -> None:
    async def main() -> None:
        server = await start_admin(
            "127.0.0.1:0", GatewayMetrics(process_metrics=False).registry, lambda: True
        )
        _, idle = await asyncio.open_connection("127.0.0.1", server.port)  # sends nothing
        await asyncio.sleep(0.05)
        await asyncio.wait_for(server.close(), 2)
        idle.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", server.port)

    asyncio.run(main())


def test_should_split_addresses() -> None:
    assert split_address("127.0.0.1:9901") == ("127.0.0.1", 9901)
    assert split_address("[::1]:0") == ("::1", 0)
    assert split_address("localhost:80") == ("127.0.0.1", 80)
    with pytest.raises(ValueError, match="HOST:PORT"):
        split_address("127.0.0.1")
