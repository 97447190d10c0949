"""JwksProvider against httpx.MockTransport (no sockets): fetch rules, discovery, single-flight, backoff."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from identity_kit import AUD, Kit

from garrison.config.models import Issuer
from garrison.identity.jwks import JwksProvider
from garrison.identity.keys import KeySet

IDP = "https://idp.test"
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class _Body(httpx.AsyncByteStream):
    """A streamed body, as from a socket (``Response(content=...)`` would arrive pre-read)."""

    def __init__(self, data: bytes, chunk: int = 65_536, pause: float = 0.0) -> None:
        self.data, self.chunk, self.pause = data, chunk, pause

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), self.chunk):
            if self.pause:
                await asyncio.sleep(self.pause)
            yield self.data[i : i + self.chunk]


def reply(status: int, body: Any = b"", headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, headers=headers, stream=_Body(data, **kw))


class FakeIdp:
    """An IdP whose answer each test sets; counts requests per path."""

    def __init__(self, kit: Kit) -> None:
        self.jwks: Any = {"keys": [kit.es256.jwk()]}
        self.status = 200
        self.delay = 0.0
        self.headers: dict[str, str] = {}
        self.discovery: dict[str, Any] = {"issuer": IDP, "jwks_uri": IDP + "/keys"}
        self.requests: list[str] = []
        self.override: Callable[[httpx.Request], httpx.Response] | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url.path)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.override is not None:
            return self.override(request)
        if request.url.path == "/.well-known/openid-configuration":
            return reply(200, self.discovery)
        return reply(self.status, self.jwks, self.headers)


def issuer(**over: Any) -> Issuer:
    fields: dict[str, Any] = {"name": "idp", "issuer": IDP, "audiences": [AUD], "jwks_url": IDP + "/keys"}
    fields.update(over)
    return Issuer(**fields)


def provider(idp: FakeIdp, iss: Issuer | None = None, **kw: Any) -> JwksProvider:
    client = httpx.AsyncClient(transport=httpx.MockTransport(idp.handle))
    return JwksProvider(iss or issuer(), client=client, **kw)


@pytest.fixture
def idp(kit: Kit) -> FakeIdp:
    return FakeIdp(kit)


def test_start_fetches_the_keys(idp: FakeIdp) -> None:
    async def go() -> None:
        p = provider(idp)
        await p.start()
        try:
            assert p.key_count == 1
            assert (p.fetches, p.fetch_failures) == (1, 0)
            assert p.last_success_at is not None
            keys = p.keys()
            assert keys is not None
            assert "ec-1" in keys
        finally:
            await p.close()

    asyncio.run(go())


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param({"status": 500}, id="http-500"),
        pytest.param({"status": 404}, id="http-404"),
        pytest.param({"jwks": {"keys": []}}, id="empty-key-set"),
        pytest.param({"jwks": b"<html>oops</html>"}, id="garbage"),
        pytest.param({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, id="symmetric-key"),
        pytest.param({"headers": {"content-encoding": "gzip"}}, id="compressed-body"),
    ],
)
def test_a_bad_fetch_never_replaces_the_last_good_keys(idp: FakeIdp, breakage: dict[str, Any]) -> None:
    async def go() -> None:
        p = provider(idp, iss=issuer(jwks_min_refetch_seconds=0))
        await p.start()
        good = p.keys()
        assert good is not None
        for k, v in breakage.items():
            setattr(idp, k, v)
        try:
            assert await p.refetch_for_unknown_kid("new") is False
            assert p.keys() is good
            assert (p.fetches, p.fetch_failures) == (2, 1)
        finally:
            await p.close()

    asyncio.run(go())


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_a_body_over_the_size_cap_is_refused(idp: FakeIdp, kit: Kit, declared: bool) -> None:
    body = json.dumps({"keys": [kit.es256.jwk()], "pad": "x" * 5000}).encode()
    idp.jwks = body
    idp.headers = {"content-length": str(len(body))} if declared else {}

    async def go() -> None:
        p = provider(idp, max_bytes=4096)
        await p.start()
        try:
            assert p.keys() is None
            assert p.fetch_failures == 1
        finally:
            await p.close()

    asyncio.run(go())
    idp.headers = {}
    asyncio.run(_starts_with_keys(idp))  # the same body is fine under the default 1 MiB cap


async def _starts_with_keys(idp: FakeIdp) -> None:
    p = provider(idp)
    await p.start()
    try:
        assert p.key_count == 1
    finally:
        await p.close()


def test_a_failed_first_fetch_is_not_fatal(idp: FakeIdp) -> None:
    idp.status = 503

    async def go() -> None:
        p = provider(idp)
        await p.start()
        try:
            assert p.keys() is None
            assert p.key_count == 0
            assert p.fetch_failures == 1
        finally:
            await p.close()

    asyncio.run(go())


def test_the_background_loop_retries_with_backoff_until_keys_arrive(idp: FakeIdp) -> None:
    idp.status = 503

    async def go() -> None:
        p = provider(idp, retry_initial_seconds=0.02)
        await p.start()
        try:
            for _ in range(150):  # retried on its own, backing off
                if p.fetch_failures >= 3:
                    break
                await asyncio.sleep(0.02)
            assert p.fetch_failures >= 3
            idp.status = 200
            for _ in range(100):
                if p.keys() is not None:
                    break
                await asyncio.sleep(0.02)
            assert p.key_count == 1
        finally:
            await p.close()

    asyncio.run(go())


def test_refetches_are_single_flight(idp: FakeIdp) -> None:
    async def go() -> None:
        p = provider(idp, iss=issuer(jwks_min_refetch_seconds=0))
        await p.start()
        idp.delay = 0.05
        try:
            results = await asyncio.gather(*(p.refetch_for_unknown_kid(f"kid-{i}") for i in range(50)))
            assert not any(results)
            assert p.fetches == 2  # the start fetch and ONE shared refetch
        finally:
            await p.close()

    asyncio.run(go())


def test_refetches_are_rate_limited(idp: FakeIdp) -> None:
    async def go() -> None:
        p = provider(idp, iss=issuer(jwks_min_refetch_seconds=60))
        await p.start()
        try:
            for i in range(200):
                assert await p.refetch_for_unknown_kid(f"kid-{i}") is False
            assert p.fetches == 1
        finally:
            await p.close()

    asyncio.run(go())


def test_a_known_kid_needs_no_refetch(idp: FakeIdp) -> None:
    async def go() -> None:
        p = provider(idp, iss=issuer(jwks_min_refetch_seconds=0))
        await p.start()
        try:
            assert await p.refetch_for_unknown_kid("ec-1") is True
            assert p.fetches == 1
        finally:
            await p.close()

    asyncio.run(go())


def test_on_change_fires_only_when_the_keys_change(idp: FakeIdp, kit: Kit) -> None:
    seen: list[KeySet] = []

    async def go() -> None:
        p = provider(idp, iss=issuer(jwks_min_refetch_seconds=0), on_change=seen.append)
        await p.start()
        try:
            await p.refetch_for_unknown_kid("x")
            assert len(seen) == 1
            idp.jwks = {"keys": [kit.es256.jwk(), kit.es256.jwk(kid="ec-2")]}
            assert await p.refetch_for_unknown_kid("ec-2") is True
            assert len(seen) == 2
        finally:
            await p.close()

    asyncio.run(go())


# -- where keys may come from --------------------------------------------------------------------
def _redirect(to: str) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/keys":
            return reply(302, headers={"location": to})
        return reply(200, {"keys": []})

    return handler


@pytest.mark.parametrize(
    "location",
    [
        pytest.param("https://evil.test/keys", id="other-host"),
        pytest.param("http://idp.test/keys", id="downgrade-to-http"),
        pytest.param("https://idp.test:8443/keys", id="other-port"),
    ],
)
def test_redirects_to_another_origin_are_refused(idp: FakeIdp, location: str) -> None:
    idp.override = _redirect(location)

    async def go() -> None:
        p = provider(idp)
        await p.start()
        try:
            assert p.keys() is None
            assert idp.requests == ["/keys"]
        finally:
            await p.close()

    asyncio.run(go())


def test_a_same_origin_redirect_is_followed(idp: FakeIdp, kit: Kit) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/keys":
            return reply(301, headers={"location": "/v2/keys"})
        return reply(200, {"keys": [kit.es256.jwk()]})

    idp.override = handler

    async def go() -> None:
        p = provider(idp)
        await p.start()
        try:
            assert p.key_count == 1
            assert idp.requests == ["/keys", "/v2/keys"]
        finally:
            await p.close()

    asyncio.run(go())


def test_discovery_finds_the_jwks_uri(idp: FakeIdp) -> None:
    async def go() -> None:
        p = provider(idp, iss=issuer(jwks_url=None, discovery=True))
        await p.start()
        try:
            assert p.key_count == 1
            assert idp.requests == ["/.well-known/openid-configuration", "/keys"]
        finally:
            await p.close()

    asyncio.run(go())


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"issuer": "https://evil.test", "jwks_uri": IDP + "/keys"}, id="mismatched-issuer"),
        pytest.param({"issuer": IDP + "/", "jwks_uri": IDP + "/keys"}, id="issuer-with-trailing-slash"),
        pytest.param({"jwks_uri": IDP + "/keys"}, id="no-issuer"),
        pytest.param({"issuer": IDP}, id="no-jwks-uri"),
        pytest.param({"issuer": IDP, "jwks_uri": "http://idp.test/keys"}, id="plain-http-jwks-uri"),
        pytest.param({"issuer": IDP, "jwks_uri": "file:///etc/passwd"}, id="file-jwks-uri"),
    ],
)
def test_bad_discovery_documents_are_rejected(idp: FakeIdp, doc: dict[str, Any]) -> None:
    idp.discovery = doc

    async def go() -> None:
        p = provider(idp, iss=issuer(jwks_url=None, discovery=True))
        await p.start()
        try:
            assert p.keys() is None
            assert p.fetch_failures == 1
            assert "/keys" not in idp.requests
        finally:
            await p.close()

    asyncio.run(go())


def test_a_slow_drip_response_hits_the_total_deadline(idp: FakeIdp, kit: Kit) -> None:
    idp.override = lambda request: reply(200, {"keys": [kit.es256.jwk()]}, chunk=10, pause=0.05)

    async def go() -> None:
        p = provider(idp, iss=issuer(jwks_timeout_seconds=0.3))
        started = asyncio.get_running_loop().time()
        await p.start()
        try:
            assert asyncio.get_running_loop().time() - started < 3.0  # 0.3 s deadline, not 5 s per chunk
            assert p.keys() is None
            assert p.fetch_failures == 1
        finally:
            await p.close()

    asyncio.run(go())


def test_close_stops_the_refresh_task(idp: FakeIdp) -> None:
    async def go() -> None:
        p = provider(idp)
        await p.start()
        task = p._task
        assert task is not None
        await p.close()
        assert task.cancelled()
        assert "idp" in repr(p)

    asyncio.run(go())
