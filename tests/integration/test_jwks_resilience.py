"""JWKS built for failure, against a real HTTPS IdP on 127.0.0.1 (the Envoy/Istio outages of research §3).

The IdP is a threaded ``http.server`` with a trustme certificate that the test controls: it serves,
rotates, breaks, goes down and comes back, and counts requests. Every server is stopped by its test.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec

from garrison.config.models import Issuer
from garrison.identity.authenticator import JwtAuthenticator
from garrison.identity.jwks import JwksProvider, KeyProvider
from garrison.identity.keys import KeySet
from garrison.pipeline.context import RequestContext
from garrison.pipeline.verdicts import CONTINUE, Deny, Verdict
from garrison.reasons import Reason

AUD = "https://api.example.com"
TD = "prod.example"


# -- the IdP -------------------------------------------------------------------------------------
class Key:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = ec.generate_private_key(ec.SECP256R1())

    def jwk(self) -> dict[str, Any]:
        d: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**d, "kid": self.kid, "use": "sig", "alg": "ES256"}


class Idp:
    """What the IdP answers. ``mode``: ok | empty | garbage | error | hang-up."""

    def __init__(self, tls: ssl.SSLContext, port: int = 0) -> None:
        self.tls = tls
        self.port = port
        self.keys: list[Key] = []
        self.mode = "ok"
        self.issuer_in_discovery: str | None = None
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def count(self, path: str = "/jwks") -> int:
        return sum(1 for p in self.requests if p == path)

    def _answer(self, path: str) -> tuple[int, bytes] | None:
        self.requests.append(path)
        if self.mode == "hang-up":
            return None
        if path == "/.well-known/openid-configuration":
            doc = {"issuer": self.issuer_in_discovery or self.url, "jwks_uri": self.url + "/jwks"}
            return 200, json.dumps(doc).encode()
        if path != "/jwks":
            return 404, b"{}"
        return {
            "ok": (200, json.dumps({"keys": [k.jwk() for k in self.keys]}).encode()),
            "empty": (200, b'{"keys": []}'),
            "garbage": (200, b"<html><body>502 Bad Gateway</body></html>"),
            "error": (503, b'{"error": "unavailable"}'),
        }[self.mode]

    def start(self) -> Idp:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answer = idp._answer(self.path)
                if answer is None:
                    self.close_connection = True  # hang up without a response
                    return
                status, body = answer
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._server = self._thread = None


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def idp(server_tls: ssl.SSLContext) -> Iterator[Idp]:
    server = Idp(server_tls)
    server.keys = [Key("k1")]
    server.start()
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- the gateway side -------------------------------------------------------------------------------
def build(idp: Idp, client_tls: ssl.SSLContext, *, discovery: bool = False, **over: Any) -> JwtAuthenticator:
    fields: dict[str, Any] = {
        "name": "corp",
        "issuer": idp.url,
        "audiences": [AUD],
        "jwks_timeout_seconds": 2,
        "jwks_min_refetch_seconds": 0.2,
    }
    fields.update({"discovery": True} if discovery else {"jwks_url": idp.url + "/jwks"})
    fields.update(over)

    def factory(issuer: Issuer, on_change: Callable[[KeySet], None]) -> KeyProvider:
        return JwksProvider(issuer, verify=client_tls, retry_initial_seconds=0.05, on_change=on_change)

    return JwtAuthenticator.build([Issuer(**fields)], TD, provider_factory=factory)


_jti = iter(range(10**9))


def token(idp: Idp, key: Key, kid: str | None = None, **claims: Any) -> bytes:
    now = time.time()
    body = {"iss": idp.url, "sub": "user-1", "aud": AUD, "iat": now, "exp": now + 300, "jti": str(next(_jti))}
    body.update(claims)
    raw = jwt.encode(body, key.private, algorithm="ES256", headers={"kid": kid or key.kid})
    return b"Bearer " + raw.encode()


async def call(authn: JwtAuthenticator, auth: bytes) -> Verdict:
    ctx = RequestContext(
        method="GET",
        raw_target=b"/",
        headers=[(b"authorization", auth)],
        client_addr="127.0.0.1",
        request_id="t",
        now=time.time(),
    )
    return await authn.authenticate(ctx, None)


def reason(v: Verdict) -> Reason | None:
    return v.reason if isinstance(v, Deny) else None


def provider(authn: JwtAuthenticator) -> JwksProvider:
    p = authn.providers["corp"]
    assert isinstance(p, JwksProvider)
    return p


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# -- the cases -------------------------------------------------------------------------------------
def test_idp_down_after_start_tokens_still_verify_with_cached_keys(
    idp: Idp, client_tls: ssl.SSLContext
) -> None:
    async def go() -> None:
        authn = build(idp, client_tls)
        await authn.start()
        try:
            assert await call(authn, token(idp, idp.keys[0])) is CONTINUE
            idp.stop()
            await asyncio.sleep(0.25)
            # an unknown kid makes the provider try the (dead) IdP: it fails, the keys stay
            assert reason(await call(authn, token(idp, Key("other")))) is Reason.TOKEN_UNKNOWN_KEY
            assert provider(authn).fetch_failures >= 1
            for _ in range(3):
                assert await call(authn, token(idp, idp.keys[0])) is CONTINUE  # new jti: not a cache hit
        finally:
            await authn.close()

    asyncio.run(go())


def test_key_rotation_is_picked_up_on_an_unknown_kid_without_restart(
    idp: Idp, client_tls: ssl.SSLContext
) -> None:
    async def go() -> None:
        authn = build(idp, client_tls)
        await authn.start()
        try:
            old, new = idp.keys[0], Key("k2")
            old_token = token(idp, old)
            assert await call(authn, old_token) is CONTINUE
            idp.keys = [new]  # the IdP rotated and withdrew the old key
            await asyncio.sleep(0.25)
            assert await call(authn, token(idp, new)) is CONTINUE
            assert idp.count() == 2
            # the withdrawn key's token was evicted from the cache when the keys changed
            assert reason(await call(authn, old_token)) is Reason.TOKEN_UNKNOWN_KEY
        finally:
            await authn.close()

    asyncio.run(go())


@pytest.mark.parametrize("mode", ["empty", "garbage", "error", "hang-up"])
def test_an_empty_or_broken_jwks_never_replaces_the_good_keys(
    idp: Idp, client_tls: ssl.SSLContext, mode: str
) -> None:
    async def go() -> None:
        authn = build(idp, client_tls)
        await authn.start()
        try:
            good = provider(authn).keys()
            idp.mode = mode
            await asyncio.sleep(0.25)
            assert reason(await call(authn, token(idp, Key("k9")))) is Reason.TOKEN_UNKNOWN_KEY
            assert idp.count() == 2  # the refetch did happen, and failed
            assert provider(authn).keys() is good
            assert provider(authn).fetch_failures == 1
            assert await call(authn, token(idp, idp.keys[0])) is CONTINUE
        finally:
            await authn.close()

    asyncio.run(go())


def test_a_flood_of_unknown_kids_causes_at_most_one_fetch_per_interval(
    idp: Idp, client_tls: ssl.SSLContext
) -> None:
    attacker = Key("x")

    async def go() -> None:
        authn = build(idp, client_tls, jwks_min_refetch_seconds=5)
        await authn.start()
        try:
            assert idp.count() == 1
            flood = [token(idp, attacker, kid=f"random-{i}") for i in range(200)]
            verdicts = await asyncio.gather(*(call(authn, t) for t in flood))
            assert {reason(v) for v in verdicts} == {Reason.TOKEN_UNKNOWN_KEY}
            assert idp.count() <= 2
            assert await call(authn, token(idp, idp.keys[0])) is CONTINUE
        finally:
            await authn.close()

    asyncio.run(go())


def test_a_concurrent_flood_shares_one_fetch(idp: Idp, client_tls: ssl.SSLContext) -> None:
    attacker = Key("x")

    async def go() -> None:
        authn = build(idp, client_tls, jwks_min_refetch_seconds=0.2)
        await authn.start()
        try:
            await asyncio.sleep(0.25)  # the interval has passed: the flood may cause one fetch
            flood = [token(idp, attacker, kid=f"random-{i}") for i in range(200)]
            verdicts = await asyncio.gather(*(call(authn, t) for t in flood))
            assert {reason(v) for v in verdicts} == {Reason.TOKEN_UNKNOWN_KEY}
            assert 2 <= idp.count() <= 3
        finally:
            await authn.close()

    asyncio.run(go())


def test_idp_down_at_start_gives_503_then_recovers(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    idp = Idp(server_tls, port=free_port())  # nothing listens there yet
    idp.keys = [Key("k1")]

    async def go() -> None:
        authn = build(idp, client_tls)
        await authn.start()  # logs the failure, does not raise
        try:
            verdict = await call(authn, token(idp, idp.keys[0]))
            assert isinstance(verdict, Deny)
            assert (verdict.reason, verdict.status) == (Reason.KEYS_UNAVAILABLE, 503)
            idp.start()
            await wait_for(lambda: provider(authn).keys() is not None)  # the background retry got them
            assert await call(authn, token(idp, idp.keys[0])) is CONTINUE
            assert provider(authn).last_success_at is not None
        finally:
            await authn.close()

    try:
        asyncio.run(go())
    finally:
        idp.stop()


def test_a_request_after_the_idp_recovers_fetches_the_keys(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    idp = Idp(server_tls).start()
    idp.keys = [Key("k1")]
    idp.mode = "error"

    async def go() -> None:
        authn = build(idp, client_tls, jwks_refresh_seconds=600)
        await authn.start()
        try:
            assert reason(await call(authn, token(idp, idp.keys[0]))) is Reason.KEYS_UNAVAILABLE
            idp.mode = "ok"
            await asyncio.sleep(0.25)
            assert await call(authn, token(idp, idp.keys[0])) is CONTINUE
        finally:
            await authn.close()

    try:
        asyncio.run(go())
    finally:
        idp.stop()


def test_discovery_finds_the_keys(idp: Idp, client_tls: ssl.SSLContext) -> None:
    async def go() -> None:
        authn = build(idp, client_tls, discovery=True)
        await authn.start()
        try:
            assert await call(authn, token(idp, idp.keys[0])) is CONTINUE
            assert idp.requests[:2] == ["/.well-known/openid-configuration", "/jwks"]
        finally:
            await authn.close()

    asyncio.run(go())


def test_discovery_with_a_mismatched_issuer_is_rejected(idp: Idp, client_tls: ssl.SSLContext) -> None:
    idp.issuer_in_discovery = "https://evil.example"

    async def go() -> None:
        authn = build(idp, client_tls, discovery=True)
        await authn.start()
        try:
            assert reason(await call(authn, token(idp, idp.keys[0]))) is Reason.KEYS_UNAVAILABLE
            assert idp.count() == 0  # the JWKS named by a lying discovery document is never fetched
            assert provider(authn).keys() is None
        finally:
            await authn.close()

    asyncio.run(go())


def test_plain_http_is_refused_without_the_insecure_flag() -> None:
    with pytest.raises(ValueError, match="https"):
        Issuer(name="corp", issuer="http://127.0.0.1:1", audiences=[AUD], jwks_url="http://127.0.0.1:1/jwks")
