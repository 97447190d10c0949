"""The scripted tour behind `garrison demo` (ARCHITECTURE §9).

Starts an example service and a gateway on free loopback ports in a temporary directory, then runs
steps that each print the command, the expected and the actual result. Exits 0 only if every step
matched. ``--serve`` keeps everything running so the printed curl commands can be pasted.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from garrison.config.loader import load_config
from garrison.demo.upstream import start_echo_upstream
from garrison.proxy.gateway import Gateway

TRUST_DOMAIN = "demo.garrison.local"
ISSUER = "https://issuer.demo.garrison.local"
AUDIENCE = "microservice1"

CONFIG = """\
# garrison.yaml written by `garrison demo`. The seed rule, as written:
#   "/microservice1/getData: allow from microservice2 only if its JWT is valid; block all other access"
trust_domain: {td}
listeners:
  - name: edge
    address: 127.0.0.1:0
issuers:
  - name: demo
    issuer: {iss}
    workload_identities: true   # this issuer mints service tokens: sub may be a SPIFFE ID
    audiences: [{aud}]
    algorithms: [ES256]
    keys: [{{kid: demo-1, pem_file: {pem}}}]
services:
  microservice1: {{upstream: "http://127.0.0.1:{up}"}}
  microservice2: {{}}
routes:
  - name: ms1-getdata
    path: /microservice1/getData
    methods: [GET]
    service: microservice1
  - name: ms1-health
    path: /microservice1/health
    methods: [GET]
    service: microservice1
    public: true
  - name: ms1-crash
    path: /microservice1/crash
    methods: [GET]
    service: microservice1
    public: true
policies:
  - name: ms2-reads-ms1
    routes: [ms1-getdata]
    from: {{services: [microservice2]}}
rate_limits:
  - name: per-client-ip
    key: [client_ip]
    rate: 50
    burst: 100
telemetry:
  admin: {{address: "127.0.0.1:0"}}
  decision_log: {{path: {log}}}
"""


@dataclass
class Step:
    title: str
    method: str
    path: str
    expect_status: int
    expect_error: str | None = None
    token: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    check: str | None = None  # a note on what else is verified
    raw_path: bool = False


def _curl(base: str, step: Step) -> str:
    parts = ["curl", "-si"]
    if step.raw_path:
        parts.append("--path-as-is")
    if step.method != "GET":
        parts += ["-X", step.method]
    if step.token:
        parts += ["-H", f"Authorization: Bearer {step.token}"]
    for k, v in step.headers.items():
        parts += ["-H", f"{k}: {v}"]
    parts.append(base + step.path)
    return " ".join(shlex.quote(p) for p in parts)


class Tour:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.key = ec.generate_private_key(ec.SECP256R1())
        pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.pem_path = workdir / "demo-signing-key.pub.pem"
        self.pem_path.write_bytes(pem)

    def token(self, sub: str, *, ttl: float = 3600, alg: str = "ES256", **extra: object) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + int(ttl), **extra}
        return jwt.encode(claims, self.key, algorithm=alg, headers={"kid": "demo-1"})

    def alg_none_token(self, sub: str) -> str:
        import base64

        def b64(d: dict[str, object]) -> str:
            return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

        now = int(time.time())
        return (
            b64({"alg": "none", "typ": "JWT"})
            + "."
            + b64(
                {
                    "iss": ISSUER,
                    "aud": AUDIENCE,
                    "sub": f"spiffe://{TRUST_DOMAIN}/svc/microservice2",
                    "exp": now + 600,
                }
            )
            + "."
        )


async def run_demo(*, serve: bool = False, out: TextIO | None = None) -> int:
    write = (out or sys.stdout).write
    with tempfile.TemporaryDirectory(prefix="garrison-demo-") as tmp:
        workdir = Path(tmp)
        tour = Tour(workdir)
        upstream = await start_echo_upstream()
        up_port = upstream.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        cfg_path = workdir / "garrison.yaml"
        cfg_path.write_text(
            CONFIG.format(
                td=TRUST_DOMAIN,
                iss=ISSUER,
                aud=AUDIENCE,
                pem=tour.pem_path,
                up=up_port,
                log=workdir / "decisions.jsonl",
            )
        )
        gw = Gateway(load_config(cfg_path), config_path=cfg_path)
        await gw.start()
        base = f"http://127.0.0.1:{gw.port()}"
        ms2 = tour.token(f"spiffe://{TRUST_DOMAIN}/svc/microservice2")
        ms3 = tour.token(f"spiffe://{TRUST_DOMAIN}/svc/microservice3")
        expired = tour.token(f"spiffe://{TRUST_DOMAIN}/svc/microservice2", ttl=-3600)
        write(f"garrison demo: gateway on {base}, example service on 127.0.0.1:{up_port}\n")
        write(f"config: {cfg_path}\n\n")
        steps = [
            Step("No token on a protected route", "GET", "/microservice1/getData", 401, "authn_required"),
            Step(
                "microservice2's valid token: the seed rule allows it",
                "GET",
                "/microservice1/getData",
                200,
                token=ms2,
                check="the service sees x-garrison-principal = microservice2's SPIFFE ID",
            ),
            Step(
                "microservice3's valid token: not allowed by any rule",
                "GET",
                "/microservice1/getData",
                403,
                "policy_no_match",
                token=ms3,
            ),
            Step("An expired token", "GET", "/microservice1/getData", 401, "token_expired", token=expired),
            Step(
                "An unsigned token (alg: none)",
                "GET",
                "/microservice1/getData",
                401,
                "token_bad_algorithm",
                token=tour.alg_none_token("x"),
            ),
            Step(
                "A spoofed identity header without a token",
                "GET",
                "/microservice1/getData",
                401,
                "authn_required",
                headers={"X-Garrison-Principal": f"spiffe://{TRUST_DOMAIN}/svc/microservice2"},
            ),
            Step(
                "Path tricks reach the same decision (//, /./, %-encoding)",
                "GET",
                "//microservice1/./%67etData",
                403,
                "policy_no_match",
                token=ms3,
                raw_path=True,
            ),
            Step(
                "Path traversal above the root",
                "GET",
                "/microservice1/../../etc/passwd",
                400,
                "path_traversal",
                raw_path=True,
            ),
            Step("A public route needs no token", "GET", "/microservice1/health", 200),
            Step(
                "An upstream stack trace is masked",
                "GET",
                "/microservice1/crash",
                500,
                "upstream_error_masked",
                check="the body holds only an error code and the request id",
            ),
            Step("No route", "GET", "/nowhere", 404, "no_route"),
        ]
        failures = 0
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                for n, step in enumerate(steps, 1):
                    ok, actual = await _run_step(client, base, step)
                    failures += not ok
                    write(f"[{n}] {step.title}\n    $ {_curl(base, step)}\n")
                    want = f"{step.expect_status}" + (f" {step.expect_error}" if step.expect_error else "")
                    write(f"    expected: {want}\n    actual:   {actual}   {'OK' if ok else 'MISMATCH'}\n\n")
                ok, actual = await _check_metrics(client, gw)
                failures += not ok
                write(f"[{len(steps) + 1}] Prometheus metrics on the admin listener\n")
                write(f"    $ curl -s http://127.0.0.1:{gw.admin.port if gw.admin else 0}/metrics\n")
                write(
                    f"    expected: garrison_requests_total counted every request\n    actual:   {actual}   "
                    f"{'OK' if ok else 'MISMATCH'}\n\n"
                )
            if serve:
                write("serving; paste the commands above. Ctrl-C to stop.\n")
                await asyncio.Event().wait()
        finally:
            await gw.stop(grace=1)
            upstream.close()
            await upstream.wait_closed()
        total = len(steps) + 1
        write(f"{total - failures}/{total} steps matched\n")
        return 0 if failures == 0 else 1


async def _run_step(client: httpx.AsyncClient, base: str, step: Step) -> tuple[bool, str]:
    headers = dict(step.headers)
    if step.token:
        headers["Authorization"] = f"Bearer {step.token}"
    try:
        if step.raw_path:  # as `curl --path-as-is`: clients normally clean dot segments themselves
            status, text = await _raw_request(base, step.method, step.path, headers)
        else:
            r = await client.request(step.method, base + step.path, headers=headers)
            status, text = r.status_code, r.text
    except (httpx.HTTPError, OSError) as exc:
        return False, f"request failed: {exc}"
    error = None
    try:
        body = json.loads(text)
        error = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        body = None
    actual = f"{status}" + (f" {error}" if error else "")
    ok = status == step.expect_status and (step.expect_error is None or error == step.expect_error)
    if ok and step.expect_status == 200 and step.token and isinstance(body, dict):
        principal = body.get("headers", {}).get("x-garrison-principal")
        ok = principal == f"spiffe://{TRUST_DOMAIN}/svc/microservice2"
        actual += f" (upstream saw x-garrison-principal: {principal})"
    if ok and step.expect_error == "upstream_error_masked":
        ok = "Traceback" not in text and set(body or {}) == {"error", "request_id"}
    return ok, actual


async def _raw_request(base: str, method: str, target: str, headers: dict[str, str]) -> tuple[int, str]:
    """Send the request target exactly as written, over a plain connection."""
    port = int(base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write((head + "\r\n").encode())
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split(b" ")[1]), body.decode("utf-8", "replace")


async def _check_metrics(client: httpx.AsyncClient, gw: Gateway) -> tuple[bool, str]:
    if gw.admin is None:
        return False, "admin listener is off"
    r = await client.get(f"http://127.0.0.1:{gw.admin.port}/metrics")
    total = 0.0
    for line in r.text.splitlines():
        if line.startswith("garrison_requests_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return r.status_code == 200 and total >= 11, f"{r.status_code}, garrison_requests_total sums to {total:g}"


__all__ = ["run_demo"]
