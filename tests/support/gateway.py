"""Run a real gateway (and the example upstream) on free loopback ports in a background thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import jwt
import uvloop
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from garrison.config.loader import load_config
from garrison.demo.upstream import start_echo_upstream
from garrison.proxy.gateway import Gateway

ISSUER = "https://issuer.test"
AUDIENCE = "api"
TD = "test.local"
LIMITS = (
    "{header_timeout: 2, body_timeout: 2, idle_timeout: 5, upstream_timeout: 3,"
    " max_body_bytes: 1048576, max_header_bytes: 8192}"
)


class Signer:
    """An ES256 issuer for tests: writes its public key, mints tokens."""

    def __init__(self, directory: Path, kid: str = "k1") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = kid
        self.pem_path = directory / f"{kid}.pub.pem"
        self.pem_path.write_bytes(
            self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def token(self, sub: str, *, ttl: int = 600, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + ttl, **claims}
        return jwt.encode(body, self.key, algorithm="ES256", headers={"kid": self.kid})

    def svc(self, name: str, **claims: Any) -> str:
        return self.token(f"spiffe://{TD}/svc/{name}", **claims)


def base_config(signer: Signer, upstream_port: int, *, extra: str = "", log: Path | None = None) -> str:
    return f"""
trust_domain: {TD}
listeners: [{{name: edge, address: "127.0.0.1:0", limits: {LIMITS}}}]
issuers:
  - name: test
    issuer: {ISSUER}
    workload_identities: true
    audiences: [{AUDIENCE}]
    keys: [{{kid: {signer.kid}, pem_file: "{signer.pem_path}"}}]
services:
  microservice1: {{upstream: "http://127.0.0.1:{upstream_port}"}}
  microservice2: {{}}
routes:
  - name: ms1-getdata
    path: /microservice1/getData
    methods: [GET]
    service: microservice1
  - name: admin
    path: /admin/**
    service: microservice1
  - name: public
    path: /public/**
    service: microservice1
    public: true
  - name: crash
    path: /microservice1/crash
    methods: [GET]
    service: microservice1
    public: true
policies:
  - name: ms2-reads-ms1
    routes: [ms1-getdata]
    from: {{services: [microservice2]}}
  - name: only-root-admins
    routes: [admin]
    from: {{users: [{{issuer: test, subject: root}}]}}
telemetry:
  admin: {{address: "127.0.0.1:0"}}
  decision_log: {{path: {str(log) if log else "null"}}}
{extra}
"""


class GatewayThread:
    """A gateway on its own uvloop in a daemon thread; the test talks to it over real sockets."""

    def __init__(self, workdir: Path, config_text: str | Callable[[int], str]) -> None:
        self.workdir = workdir
        self.config_path = workdir / "garrison.yaml"
        self._config_text = config_text
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.gateway: Gateway | None = None
        self.upstream: asyncio.AbstractServer | None = None
        self.upstream_port = 0

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 15) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, timeout: float = 15) -> GatewayThread:
        """Boot the upstream and the gateway; ``timeout`` covers config compilation (a WAF's first
        hyperscan compile on a machine with a cold cache takes tens of seconds)."""
        self.thread.start()

        async def boot() -> None:
            self.upstream = await start_echo_upstream()
            self.upstream_port = self.upstream.sockets[0].getsockname()[1]
            text = self._config_text
            self.config_path.write_text(text(self.upstream_port) if callable(text) else text)
            self.gateway = Gateway(load_config(self.config_path), config_path=self.config_path)
            await self.gateway.start()

        self.call(boot(), timeout)
        return self

    @property
    def port(self) -> int:
        assert self.gateway is not None
        return self.gateway.port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        assert self.gateway is not None and self.gateway.admin is not None
        return f"http://127.0.0.1:{self.gateway.admin.port}"

    def reload(self, text: str) -> bool:
        self.config_path.write_text(text)
        assert self.gateway is not None
        return bool(self.call(self.gateway.reload()))

    def stop(self) -> None:
        if self.loop.is_closed():
            return

        async def down() -> None:
            if self.gateway is not None:
                await self.gateway.stop(grace=1)
            if self.upstream is not None:
                self.upstream.close()

        try:
            self.call(down())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()
