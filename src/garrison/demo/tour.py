"""The scripted tour behind `garrison demo` (ARCHITECTURE §9).

Starts the control plane (workload CA + OAuth2 token service, SQLite store sealed by a KEK), an
example service and a gateway on free loopback ports in a temporary directory, then runs steps that
each print the command, the expected and the actual result. Exits 0 only if every step matched.
``--serve`` keeps everything running so the printed curl commands can be pasted.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shlex
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from garrison.config.loader import load_config
from garrison.control.plane import ControlPlane, write_secret_file
from garrison.control.server import ControlPlaneServer
from garrison.demo.upstream import start_echo_upstream
from garrison.identity.ca import generate_kek_file
from garrison.identity.oauth.assertion import assertion_form, build_client_assertion
from garrison.proxy.gateway import Gateway

TRUST_DOMAIN = "demo.garrison.local"
ISSUER = "https://issuer.demo.garrison.local"
AUDIENCE = "microservice1"
MS2_TOKEN = "$MS2_TOKEN"  # noqa: S105 - a placeholder, replaced by the token microservice2 obtains

CONFIG = """\
# garrison.yaml written by `garrison demo`. The seed rule, as written:
#   "/microservice1/getData: allow from microservice2 only if its JWT is valid; block all other access"
trust_domain: {td}
store:
  url: garrison.db              # SQLite; private keys in it are sealed by the KEK below
  kek: {{file: kek.key}}
control_plane:
  address: 127.0.0.1:{cp}
  ca_file: ca/bundle.pem
  admin_token_file: admin.token
  audit_log: audit.log
  bundle_refresh_seconds: 1     # gateways pull revocations this often
listeners:
  - name: edge
    address: 127.0.0.1:0
issuers:
  - name: garrison              # the control plane's own token service (RFC 9068 access tokens)
    issuer: https://127.0.0.1:{cp}
    jwks_url: https://127.0.0.1:{cp}/oauth2/jwks
    jwks_ca_file: ca/bundle.pem
    audiences: [spiffe://{td}/svc/microservice1]
    typ: at+jwt
    workload_identities: true   # sub is the client's SPIFFE ID
    revocations: true           # refuse jtis the control plane lists as revoked (RFC 7009)
  - name: demo                  # a static key, used here only to craft an expired token
    issuer: {iss}
    workload_identities: true
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ApiStep:
    """A step that talks to the control plane: ``run`` returns (matched, what happened)."""

    title: str
    command: str
    expected: str
    run: Callable[[], Awaitable[tuple[bool, str]]]


class ControlPlaneDemo:
    """The control-plane half of the tour: clients, tokens, a join token, a revocation."""

    def __init__(self, workdir: Path, base_url: str, admin_token: str) -> None:
        self.workdir = workdir
        self.base = base_url
        self.ca_file = workdir / "ca" / "bundle.pem"
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        self.http = httpx.AsyncClient(base_url=base_url, verify=ctx, timeout=10)
        self.keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.tokens: dict[str, str] = {}
        self.last_form: dict[str, str] = {}

    def sid(self, name: str) -> str:
        return f"spiffe://{TRUST_DOMAIN}/svc/{name}"

    async def register(self, name: str) -> None:
        key = self.keys[name] = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        reg = {
            "client_id": self.sid(name),
            "auth_method": "private_key_jwt",
            "jwks": [jwk],
            "audiences": [self.sid("microservice1")],
            "scopes": ["read"],
        }
        r = await self.http.put("/v1/clients", json=reg, headers=self.admin)
        if r.status_code not in (200, 201):
            raise RuntimeError(f"client registration failed: {r.status_code} {r.text[:200]}")

    def curl_token(self, name: str) -> str:
        return (
            f"curl -s --cacert {self.ca_file} {self.base}/oauth2/token -d grant_type=client_credentials"
            f" -d client_id={self.sid(name)}"
            " -d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            " -d client_assertion=<JWT signed by the client's key: iss=sub=client_id, aud=issuer, jti, exp>"
        )

    async def get_token(self, name: str, *, replay: bool = False) -> tuple[int, dict[str, object]]:
        if replay:
            form = self.last_form
        else:
            assertion = build_client_assertion(self.sid(name), self.keys[name], self.base)
            form = self.last_form = assertion_form(
                self.sid(name), assertion, grant_type="client_credentials"
            )
        r = await self.http.post("/oauth2/token", data=form)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code == 200 and isinstance(body.get("access_token"), str):
            self.tokens[name] = str(body["access_token"])
        return r.status_code, body

    async def close(self) -> None:
        await self.http.aclose()


async def run_demo(*, serve: bool = False, out: TextIO | None = None) -> int:
    write = (out or sys.stdout).write
    with tempfile.TemporaryDirectory(prefix="garrison-demo-") as tmp:
        workdir = Path(tmp)
        tour = Tour(workdir)
        upstream = await start_echo_upstream()
        up_port = upstream.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        cp_port = _free_port()
        cfg_path = workdir / "garrison.yaml"
        cfg_path.write_text(
            CONFIG.format(
                td=TRUST_DOMAIN,
                iss=ISSUER,
                aud=AUDIENCE,
                pem=tour.pem_path,
                up=up_port,
                cp=cp_port,
                log=workdir / "decisions.jsonl",
            )
        )
        # What `garrison init` does: a KEK (0600), an admin token (0600), the CA, the trust anchors.
        generate_kek_file(workdir / "kek.key")
        admin_token = secrets.token_urlsafe(32)
        write_secret_file(workdir / "admin.token", admin_token)
        config = load_config(cfg_path)
        plane = await asyncio.to_thread(ControlPlane.open, config, workdir, initialize=True)
        (workdir / "ca").mkdir()
        (workdir / "ca" / "bundle.pem").write_bytes(plane.trust_anchors_pem())
        cps = ControlPlaneServer(plane)
        await cps.start()
        gw: Gateway | None = None
        cpd = ControlPlaneDemo(workdir, plane.settings.base_url, admin_token)
        try:
            for name in ("microservice2", "microservice3"):
                await cpd.register(name)
            await cpd.get_token("microservice3")
            gw = Gateway(config, config_path=cfg_path)
            await gw.start()
            failures = await _tour(write, gw, tour, cpd, up_port)
            if serve:
                write("serving; paste the commands above. Ctrl-C to stop.\n")
                await asyncio.Event().wait()
        finally:
            await cpd.close()
            if gw is not None:
                await gw.stop(grace=1)
            await cps.stop()
            plane.close()
            upstream.close()
            await upstream.wait_closed()
        return 0 if failures == 0 else 1


async def _tour(
    write: Callable[[str], object], gw: Gateway, tour: Tour, cpd: ControlPlaneDemo, up_port: int
) -> int:
    base = f"http://127.0.0.1:{gw.port()}"
    ms3 = cpd.tokens["microservice3"]
    expired = tour.token(f"spiffe://{TRUST_DOMAIN}/svc/microservice2", ttl=-3600)
    write(f"garrison demo: gateway on {base}, control plane on {cpd.base}")
    write(f", example service on 127.0.0.1:{up_port}\n")
    write(f"config: {gw.config_path}\n\n")

    async def token_step() -> tuple[bool, str]:
        status, body = await cpd.get_token("microservice2")
        tok = cpd.tokens.get("microservice2", "")
        typ = jwt.get_unverified_header(tok).get("typ") if tok else None
        ok = status == 200 and body.get("token_type") == "Bearer" and typ == "at+jwt"
        return ok, f"{status} token_type={body.get('token_type')} typ={typ}"

    async def replay_step() -> tuple[bool, str]:
        status, body = await cpd.get_token("microservice2", replay=True)
        return status == 401 and body.get("error") == "invalid_client", f"{status} {body.get('error')}"

    async def revoke_step() -> tuple[bool, str]:
        tok = cpd.tokens["microservice2"]
        assertion = build_client_assertion(cpd.sid("microservice2"), cpd.keys["microservice2"], cpd.base)
        form = assertion_form(cpd.sid("microservice2"), assertion, token=tok)
        r = await cpd.http.post("/oauth2/revoke", data=form)
        if r.status_code != 200:
            return False, f"revocation answered {r.status_code}"
        deadline = time.monotonic() + 5
        async with httpx.AsyncClient(timeout=10) as c:
            while True:
                g = await c.get(base + "/microservice1/getData", headers={"Authorization": f"Bearer {tok}"})
                err = g.json().get("error") if g.status_code != 200 else None
                if (g.status_code == 401 and err == "token_revoked") or time.monotonic() > deadline:
                    return g.status_code == 401 and err == "token_revoked", f"{g.status_code} {err}"
                await asyncio.sleep(0.2)

    async def join_step() -> tuple[bool, str]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        sid = cpd.sid("microservice2")
        r = await cpd.http.post("/v1/join-tokens", json={"spiffe_id": sid}, headers=cpd.admin)
        if r.status_code != 201:
            return False, f"join-token answered {r.status_code}"
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(sid)]), critical=True)
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
            .decode()
        )
        j = await cpd.http.post("/v1/svids/join", json={"join_token": r.json()["join_token"], "csr": csr})
        again = await cpd.http.post("/v1/svids/join", json={"join_token": r.json()["join_token"], "csr": csr})
        if j.status_code != 201:
            return False, f"{j.status_code} {j.text[:80]}"
        leaf = x509.load_pem_x509_certificates(j.json()["chain_pem"].encode())[0]
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
        ttl = leaf.not_valid_after_utc.timestamp() - time.time()
        replay_err = again.json().get("error")
        refused = again.status_code == 401 and replay_err == "join_token_invalid"
        ok = uris == [sid] and 0 < ttl <= 3600 and refused
        reused = f"token reused: {again.status_code} {replay_err}"
        return ok, f"201, SVID for {uris[0]} valid {ttl / 60:.0f} min; {reused}"

    steps: list[Step | ApiStep] = [
        Step("No token on a protected route", "GET", "/microservice1/getData", 401, "authn_required"),
        ApiStep(
            "microservice2 gets an access token from the control plane (client_credentials, private_key_jwt)",
            cpd.curl_token("microservice2"),
            "200, an RFC 9068 JWT (typ at+jwt)",
            token_step,
        ),
        ApiStep(
            "The same client assertion sent again (RFC 7523 jti replay)",
            "(the previous command, unchanged)",
            "401 invalid_client",
            replay_step,
        ),
        Step(
            "microservice2's token: the seed rule allows it",
            "GET",
            "/microservice1/getData",
            200,
            token=MS2_TOKEN,
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
        ApiStep(
            "microservice2's token is revoked (RFC 7009); gateways learn it within bundle_refresh_seconds",
            f"curl -s --cacert {cpd.ca_file} {cpd.base}/oauth2/revoke -d token=$MS2_TOKEN"
            " -d client_id=... -d client_assertion=...;"
            f" then curl -si -H 'Authorization: Bearer $MS2_TOKEN' {base}/microservice1/getData",
            "401 token_revoked",
            revoke_step,
        ),
        ApiStep(
            "A workload bootstraps its X.509-SVID with a one-time join token",
            f"garrison join-token create {cpd.sid('microservice2')}; then POST {cpd.base}/v1/svids/join"
            " {join_token, csr} (twice)",
            "201, an SVID for that SPIFFE ID (1 h); the token reused: 401 join_token_invalid",
            join_step,
        ),
    ]
    failures = 0
    async with httpx.AsyncClient(timeout=10) as client:
        for n, step in enumerate(steps, 1):
            if isinstance(step, ApiStep):
                ok, actual = await step.run()
                command, want = step.command, step.expected
            else:
                if step.token == MS2_TOKEN:
                    step = Step(**{**step.__dict__, "token": cpd.tokens.get("microservice2")})
                ok, actual = await _run_step(client, base, step)
                command = _curl(base, step)
                want = f"{step.expect_status}" + (f" {step.expect_error}" if step.expect_error else "")
            failures += not ok
            write(f"[{n}] {step.title}\n    $ {command}\n")
            write(f"    expected: {want}\n    actual:   {actual}   {'OK' if ok else 'MISMATCH'}\n\n")
        ok, actual = await _check_metrics(client, gw)
        failures += not ok
        write(f"[{len(steps) + 1}] Prometheus metrics on the admin listener\n")
        write(f"    $ curl -s http://127.0.0.1:{gw.admin.port if gw.admin else 0}/metrics\n")
        write(
            f"    expected: garrison_requests_total counted every request\n    actual:   {actual}   "
            f"{'OK' if ok else 'MISMATCH'}\n\n"
        )
    total = len(steps) + 1
    write(f"{total - failures}/{total} steps matched\n")
    return failures


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
