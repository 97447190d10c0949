"""The gateway with a JWKS-URL issuer: rotation picked up without restart, IdP outages survived."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from support.gateway import AUDIENCE, ISSUER, TD, GatewayThread, Signer, base_config


class PlainIdp:
    """A JWKS endpoint over plain HTTP on 127.0.0.1 (the gateway allows http only with the insecure_ flag)."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.mode = "ok"  # ok | empty | garbage | error
        self.fetches = 0
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                idp.fetches += 1
                body, status = {
                    "ok": (json.dumps({"keys": [idp.jwk(k, v) for k, v in idp.keys.items()]}).encode(), 200),
                    "empty": (b'{"keys": []}', 200),
                    "garbage": (b"<html>oops</html>", 200),
                    "error": (b"{}", 503),
                }[idp.mode]
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def jwk(kid: str, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
        d: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return {**d, "kid": kid, "use": "sig", "alg": "ES256"}

    def add_key(self, kid: str) -> ec.EllipticCurvePrivateKey:
        key = ec.generate_private_key(ec.SECP256R1())
        self.keys[kid] = key
        return key

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def token(key: ec.EllipticCurvePrivateKey, kid: str, sub: str = f"spiffe://{TD}/svc/microservice2") -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "iat": now,
        "exp": now + 600,
        "jti": f"{kid}-{time.time()}",
    }
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


@pytest.fixture
def idp_gateway(tmp_path: Path, signer: Signer) -> Iterator[tuple[PlainIdp, GatewayThread]]:
    idp = PlainIdp()
    idp.add_key("k1")

    def cfg(port: int) -> str:
        text = base_config(signer, port)
        static = f'    keys: [{{kid: {signer.kid}, pem_file: "{signer.pem_path}"}}]\n'
        jwks = (
            f"    jwks_url: http://127.0.0.1:{idp.port}/jwks\n    insecure_allow_http_jwks: true\n"
            "    jwks_min_refetch_seconds: 0\n    jwks_refresh_seconds: 3600\n"
        )
        return text.replace(static, jwks)

    gw = GatewayThread(tmp_path, cfg).start()
    try:
        yield idp, gw
    finally:
        gw.stop()
        idp.stop()


def get(gw: GatewayThread, tok: str) -> int:
    return httpx.get(
        gw.url + "/microservice1/getData", headers={"Authorization": f"Bearer {tok}"}
    ).status_code


def test_rotation_and_outages_through_the_gateway(idp_gateway: tuple[PlainIdp, GatewayThread]) -> None:
    idp, gw = idp_gateway
    k1 = idp.keys["k1"]
    assert get(gw, token(k1, "k1")) == 200

    k2 = idp.add_key("k2")  # the IdP rotates: a kid the gateway has never seen
    assert get(gw, token(k2, "k2")) == 200  # picked up by the unknown-kid refetch, no restart

    for mode in ("empty", "garbage", "error"):  # a broken IdP never replaces the keys in use
        idp.mode = mode
        assert get(gw, token(k2, "unknown-kid")) == 401  # triggers a (failing) refetch
        assert get(gw, token(k1, "k1")) == 200, mode
        assert get(gw, token(k2, "k2")) == 200, mode

    idp.stop()  # the IdP is down altogether
    assert get(gw, token(k1, "k1")) == 200

    metrics = httpx.get(gw.admin_url + "/metrics").text
    failures = [
        line
        for line in metrics.splitlines()
        if line.startswith('garrison_jwks_fetch_failures_total{issuer="test"}')
    ]
    assert failures and float(failures[0].rsplit(" ", 1)[1]) >= 3
    assert 'garrison_jwks_keys{issuer="test"} 2.0' in metrics


def test_a_flood_of_unknown_kids_is_rate_limited(tmp_path: Path, signer: Signer) -> None:
    idp = PlainIdp()
    k1 = idp.add_key("k1")

    def cfg(port: int) -> str:
        static = f'    keys: [{{kid: {signer.kid}, pem_file: "{signer.pem_path}"}}]\n'
        jwks = f"    jwks_url: http://127.0.0.1:{idp.port}/jwks\n    insecure_allow_http_jwks: true\n"
        return base_config(signer, port).replace(static, jwks)  # default: >= 10 s between kid refetches

    gw = GatewayThread(tmp_path, cfg).start()
    try:
        before = idp.fetches
        codes = {get(gw, token(k1, f"random-{i}")) for i in range(50)}
        assert codes == {401}
        assert idp.fetches - before <= 1
        assert get(gw, token(k1, "k1")) == 200
    finally:
        gw.stop()
        idp.stop()
