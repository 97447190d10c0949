"""The control-plane CLI as a user runs it: ``init``, ``up``, join tokens, certs, clients, tokens.

``garrison up`` runs as a process (it starts the control plane and the gateway as processes) on
free loopback ports; the commands talk to it over real TLS. Process-level behaviour (exit codes,
stdout vs stderr, signals, children) is checked with ``python -m garrison.cli.main`` processes; the
long flows call the same ``main(argv)`` in this process, because each process spends ~1 s importing.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.control import free_port

GARRISON = [sys.executable, "-m", "garrison.cli.main"]
TD = "garrison.local"
API = f"spiffe://{TD}/svc/api"
CLIENT = f"spiffe://{TD}/svc/client"  # the client init's example policy allows
OTHER = f"spiffe://{TD}/svc/other"  # registered, but no policy allows it
WEB = f"spiffe://{TD}/svc/web"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command as a separate process, as a user runs it."""
    return subprocess.run([*GARRISON, *args], capture_output=True, text=True, timeout=60, input=stdin)


def ok(*args: str) -> Result:
    r = run(*args)
    assert r.returncode == 0, f"{args}: {r.stderr}"
    return Result(r.returncode, r.stdout, r.stderr)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class Cli:
    """The same ``garrison`` entry point called in this process: each subprocess costs ~1 s of
    imports, so the long flows run here and only the process-level behaviour runs as processes."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str, stdin: str | None = None) -> Result:
        from garrison.cli.main import main

        self.capsys.readouterr()
        saved = sys.stdin
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        try:
            code = main(list(args))
        finally:
            sys.stdin = saved
        out, err = self.capsys.readouterr()
        return Result(code, out, err)

    def ok(self, *args: str) -> Result:
        r = self(*args)
        assert r.returncode == 0, f"{args}: {r.stderr}"
        return r


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


@dataclass
class Setup:
    dir: Path
    config: Path
    gateway_port: int
    cp_port: int

    @property
    def cp_url(self) -> str:
        return f"https://127.0.0.1:{self.cp_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def ca(self) -> Path:
        return self.dir / "ca" / "bundle.pem"


def init(where: Path) -> Setup:
    """``garrison init`` on free ports (in this process: the ``up`` tests run it as processes)."""
    from garrison.cli.main import main

    gw, cp, admin = free_port(), free_port(), free_port()
    d = where / "setup"
    args = (
        "init", str(d), "--trust-domain", TD, "--gateway-address", f"127.0.0.1:{gw}",
        "--control-plane-address", f"127.0.0.1:{cp}", "--admin-address", f"127.0.0.1:{admin}",
    )  # fmt: skip
    assert main(list(args)) == 0
    return Setup(d, d / "garrison.yaml", gw, cp)


class Up:
    """``garrison up`` as a child process; its stderr goes to a file (a full pipe would block it)."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.log_path = setup.dir.parent / "up.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*GARRISON, "up", "-c", str(setup.config)], stdout=self._log, stderr=self._log
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_gateway(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"garrison up exited early:\n{self.log}"
            try:
                if httpx.get(f"{self.setup.gateway_url}/api/x", timeout=1).status_code == 401:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the gateway never answered:\n{self.log}")

    def child_pids(self) -> dict[str, int]:
        return {
            m[0]: int(m[1])
            for m in re.findall(r"started the (control plane|gateway) \(pid (\d+)\)", self.log)
        }

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Upstream:
    """A plain HTTP service behind the gateway: 200 and the path it saw."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """One ``init``'ed setup with ``up`` running and the example service's upstream answering.

    Shared by the flow tests (one ``up`` costs seconds); the last test stops it with SIGTERM.
    """
    upstream = Upstream()
    setup = init(tmp_path_factory.mktemp("running"))
    text = setup.config.read_text()
    assert "http://127.0.0.1:9000" in text
    setup.config.write_text(text.replace("http://127.0.0.1:9000", f"http://127.0.0.1:{upstream.port}"))
    proc = Up(setup)
    try:
        proc.wait_gateway()
        yield proc
    finally:
        proc.stop()
        upstream.close()


@pytest.fixture
def running(up: Up) -> Setup:
    if up.proc.poll() is not None:
        pytest.fail(f"garrison up is not running:\n{up.log}")
    return up.setup


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _keypair(where: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = where / f"{name}-key.pem", where / f"{name}-pub.pem"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    priv.chmod(0o600)
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub


# -- init ----------------------------------------------------------------------------------------------
def test_init_creates_private_files_and_a_valid_config(tmp_path: Path) -> None:
    s = init(tmp_path)
    assert _mode(s.dir) == 0o700
    for name in ("kek.key", "admin.token", "garrison.db"):
        assert _mode(s.dir / name) == 0o600, name
    assert s.ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert len((s.dir / "admin.token").read_text().strip()) >= 40
    text = s.config.read_text()
    assert f"issuer: {s.cp_url}" in text and f"jwks_url: {s.cp_url}/oauth2/jwks" in text
    assert f'audiences: ["{API}"]' in text
    r = ok("config", "check", str(s.config))
    assert "ok (1 routes, 1 policies, 1 issuers)" in r.stdout


def test_init_refuses_an_existing_setup(tmp_path: Path) -> None:
    s = init(tmp_path)
    kek = (s.dir / "kek.key").read_bytes()
    r = run("init", str(s.dir))
    assert r.returncode == 1
    assert "already exists" in r.stderr and "refusing to overwrite" in r.stderr
    assert "Traceback" not in r.stderr
    assert (s.dir / "kek.key").read_bytes() == kek  # the KEK that seals the store is untouched


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--trust-domain", "Bad.Domain"), "trust_domain"),
        (("--gateway-address", "nope"), "--gateway-address must be HOST:PORT"),
        (("--control-plane-address", "127.0.0.1:99999"), "--control-plane-address must be HOST:PORT"),
    ],
)
def test_init_rejects_bad_options_before_creating_anything(
    tmp_path: Path, cli: Cli, option: tuple[str, str], message: str
) -> None:
    r = cli("init", str(tmp_path / "new"), *option)
    assert r.returncode == 1 and message in r.stderr
    assert not (tmp_path / "new").exists()


def test_client_register_refuses_private_key_material(tmp_path: Path, cli: Cli) -> None:
    jwk = tmp_path / "private.jwk"
    key = ec.generate_private_key(ec.SECP256R1())
    jwk.write_text(json.dumps(jwt.algorithms.ECAlgorithm.to_jwk(key, as_dict=True)))
    r = cli("client", "register", "--client-id", CLIENT, "--jwk-file", str(jwk), "--audience", API)
    assert r.returncode == 1 and "private or symmetric key material" in r.stderr
    assert json.loads(jwk.read_text())["d"] not in r.stderr


# -- up ------------------------------------------------------------------------------------------------
def test_up_names_the_control_plane_when_it_cannot_start(tmp_path: Path) -> None:
    s = init(tmp_path)
    (s.dir / "kek.key").chmod(0o644)  # the KEK must be 0600: the control plane refuses to start
    proc = Up(s)
    code = proc.proc.wait(30)
    proc.stop()
    assert code == 1, proc.log
    assert "the control plane exited with status" in proc.log
    assert "0644" in proc.log  # the control plane's own reason is shown too
    assert "started the gateway" not in proc.log
    assert "Traceback" not in proc.log


def test_commands_say_when_the_control_plane_is_unreachable(tmp_path: Path, cli: Cli) -> None:
    s = init(tmp_path)
    r = cli("cert", "list", "-c", str(s.config))
    assert r.returncode == 1
    assert f"cannot reach the control plane at {s.cp_url}" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_up_runs_the_control_plane_and_the_gateway(up: Up, running: Setup) -> None:
    ctx = ssl.create_default_context(cafile=str(running.ca))
    assert httpx.get(f"{running.cp_url}/healthz", verify=ctx).json() == {"status": "ok"}
    assert httpx.get(f"{running.gateway_url}/api/x").status_code == 401  # the gateway, default deny
    pids = up.child_pids()
    assert set(pids) == {"control plane", "gateway"}
    assert all(_alive(p) for p in pids.values())


# -- join tokens and SVIDs -----------------------------------------------------------------------------
def test_join_token_issue_inspect_renew_revoke(running: Setup, tmp_path: Path, cli: Cli) -> None:
    c = str(running.config)
    r = ok("join-token", "create", WEB, "--ttl", "120", "-c", c)  # a process: stdout vs stderr
    token = r.stdout.strip()
    assert len(token) >= 20 and token not in r.stderr and "expires" in r.stderr

    out = tmp_path / "web"
    r = cli("cert", "issue", "-c", c, "--spiffe-id", WEB, "--out", str(out), "--join-token", "-", stdin=token)
    assert r.returncode == 0, r.stderr
    assert _mode(out / "key.pem") == 0o600
    assert f"spiffe id: {WEB}" in r.stdout
    serial1 = re.search(r"serial:\s+([0-9a-f]+)", r.stdout)
    assert serial1 is not None

    r = cli.ok("cert", "inspect", str(out / "svid.pem"))
    assert WEB in r.stdout and serial1[1] in r.stdout and "valid X509-SVID shape" in r.stdout
    r = cli("cert", "inspect", str(running.ca))  # a CA certificate is not an SVID
    assert r.returncode == 1 and "not an SVID" in r.stderr

    # A join token is single use.
    again = tmp_path / "again"
    r = cli("cert", "issue", "-c", c, "--spiffe-id", WEB, "--out", str(again), "--join-token", token)
    assert r.returncode == 1 and "join_token_invalid" in r.stderr
    assert token not in r.stderr and not again.exists()

    old_key = (out / "key.pem").read_bytes()
    r = cli.ok("cert", "renew", "-c", c, "--cert", str(out / "svid.pem"), "--key", str(out / "key.pem"))
    serial2 = re.search(r"serial:\s+([0-9a-f]+)", r.stdout)
    assert serial2 is not None and serial2[1] != serial1[1]
    assert (out / "key.pem").read_bytes() != old_key and _mode(out / "key.pem") == 0o600
    assert serial2[1] in cli.ok("cert", "inspect", str(out / "svid.pem")).stdout
    assert serial2[1] in cli.ok("cert", "list", "-c", c, "--spiffe-id", WEB).stdout

    r = cli.ok("cert", "revoke", serial2[1], "--reason", "test", "-c", c)
    assert f"revoked {serial2[1]}" in r.stdout
    r = cli("cert", "renew", "-c", c, "--cert", str(out / "svid.pem"), "--key", str(out / "key.pem"))
    assert r.returncode == 1, r.stdout
    assert "revoked" in r.stderr
    assert serial2[1] in cli.ok("cert", "inspect", str(out / "svid.pem")).stdout  # files untouched


def test_admin_token_is_never_sent_to_a_plain_http_url(tmp_path: Path, cli: Cli) -> None:
    import socket

    s = init(tmp_path)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        r = cli("client", "list", "-c", str(s.config), "--url", f"http://127.0.0.1:{port}")
        with pytest.raises(TimeoutError):  # the CLI never even connected
            listener.accept()
    finally:
        listener.close()
    assert r.returncode == 1 and "--url must be https://" in r.stderr


def test_admin_commands_need_the_admin_token(running: Setup, tmp_path: Path, cli: Cli) -> None:
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-admin-token")
    wrong.chmod(0o600)
    r = cli("join-token", "create", WEB, "-c", str(running.config), "--admin-token-file", str(wrong))
    assert r.returncode == 1 and "admin_required" in r.stderr
    assert r.stdout == ""
    assert "not-the-admin-token" not in r.stderr


# -- OAuth clients and tokens --------------------------------------------------------------------------
def test_client_token_introspect_revoke(running: Setup, tmp_path: Path, cli: Cli) -> None:
    c = str(running.config)
    cid = f"spiffe://{TD}/svc/reporter"
    key, pub = _keypair(tmp_path, "reporter")
    cli.ok("client", "register", "-c", c, "--client-id", cid, "--public-key-file", str(pub),
           "--audience", API, "--scope", "read")  # fmt: skip
    assert cid in cli.ok("client", "list", "-c", c).stdout

    auth = ("-c", c, "--client-id", cid, "--key", str(key))
    r = cli.ok("token", "issue", *auth, "--scope", "read")
    token = r.stdout.strip()
    assert token not in r.stderr

    jwks = httpx.get(
        f"{running.cp_url}/oauth2/jwks", verify=ssl.create_default_context(cafile=str(running.ca))
    )
    kid = jwt.get_unverified_header(token)["kid"]
    signing = jwt.PyJWKSet.from_dict(jwks.json())[kid]
    claims = jwt.decode(token, signing.key, algorithms=["ES256"], audience=API, issuer=running.cp_url)
    assert claims["sub"] == cid and claims["scope"] == "read"

    doc = json.loads(cli.ok("token", "introspect", token, *auth).stdout)
    assert doc["active"] is True and doc["sub"] == cid

    cli.ok("token", "revoke", token, *auth)
    assert json.loads(cli.ok("token", "introspect", token, *auth).stdout) == {"active": False}

    # Another key cannot authenticate as this client.
    stranger, _ = _keypair(tmp_path, "stranger")
    r = cli("token", "issue", "-c", c, "--client-id", cid, "--key", str(stranger))
    assert r.returncode == 1 and "invalid_client" in r.stderr and r.stdout == ""

    cli.ok("client", "remove", cid, "-c", c)
    r = cli("client", "remove", cid, "-c", c)
    assert r.returncode == 1 and "not_found" in r.stderr


def test_gateway_admits_the_allowed_client_only(running: Setup, tmp_path: Path, cli: Cli) -> None:
    c = str(running.config)
    tokens = {}
    for cid in (CLIENT, OTHER):
        key, pub = _keypair(tmp_path, cid.rsplit("/", 1)[1])
        if cid == CLIENT:  # a PEM public key ...
            cli.ok("client", "register", "-c", c, "--client-id", cid, "--public-key-file", str(pub),
                   "--audience", API)  # fmt: skip
        else:  # ... or a JWK (Set) file
            public = serialization.load_pem_public_key(pub.read_bytes())
            jwk = tmp_path / "other.jwks"
            jwk.write_text(json.dumps({"keys": [jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)]}))
            cli.ok(
                "client", "register", "-c", c, "--client-id", cid, "--jwk-file", str(jwk), "--audience", API
            )
        if cid == CLIENT:  # once as a process: the token alone on stdout, nothing on stderr
            r = ok("token", "issue", "-c", c, "--client-id", cid, "--key", str(key))
            assert r.stdout.count("\n") == 1 and r.stdout.strip() not in r.stderr
        else:
            r = cli.ok("token", "issue", "-c", c, "--client-id", cid, "--key", str(key))
        tokens[cid] = r.stdout.strip()

    def call(token: str) -> httpx.Response:
        return httpx.get(f"{running.gateway_url}/api/hello", headers={"Authorization": f"Bearer {token}"})

    allowed = call(tokens[CLIENT])
    assert allowed.status_code == 200, allowed.text
    assert allowed.json() == {"path": "/api/hello"}
    denied = call(tokens[OTHER])
    assert denied.status_code == 403
    assert "path" not in denied.text
    assert call("not-a-token").status_code == 401


def test_tls_client_auth_with_an_svid(running: Setup, tmp_path: Path, cli: Cli) -> None:
    c = str(running.config)
    cid = f"spiffe://{TD}/svc/mtls"
    cli.ok("client", "register", "-c", c, "--client-id", cid, "--tls", "--audience", API,
           "--grant", "token-exchange")  # fmt: skip
    listed = {x["client_id"]: x for x in json.loads(cli.ok("client", "list", "-c", c, "--json").stdout)}
    assert listed[cid]["auth_method"] == "tls_client_auth"
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in listed[cid]["grant_types"]
    out = tmp_path / "mtls"
    cli.ok("cert", "issue", "-c", c, "--spiffe-id", cid, "--out", str(out))  # admin issuance
    r = cli.ok("token", "issue", "-c", c, "--client-id", cid, "--cert", str(out / "svid.pem"),
               "--key", str(out / "key.pem"), "--json")  # fmt: skip
    doc = json.loads(r.stdout)
    assert doc["token_type"] == "Bearer"
    claims = jwt.decode(doc["access_token"], options={"verify_signature": False})
    assert claims["sub"] == cid and "x5t#S256" in claims["cnf"]  # bound to the SVID (RFC 8705)
    # Without the certificate the same client cannot get a token.
    r = cli("token", "issue", "-c", c, "--client-id", cid, "--key", str(out / "key.pem"))
    assert r.returncode == 1 and "invalid_client" in r.stderr


def test_up_names_the_gateway_when_it_dies(tmp_path: Path) -> None:
    s = init(tmp_path)
    with socket.socket() as squatter:  # the gateway's port is taken: it starts, fails and exits
        squatter.bind(("127.0.0.1", s.gateway_port))
        squatter.listen()
        proc = Up(s)
        code = proc.proc.wait(60)
    proc.stop()
    assert code == 1, proc.log
    assert "the gateway exited unexpectedly" in proc.log and "stopping the control plane" in proc.log
    assert "the gateway died" in proc.log
    assert not _alive(proc.child_pids()["control plane"])


# -- last: stops the shared `up` -----------------------------------------------------------------------
def test_up_forwards_sighup_then_sigterm_stops_both_cleanly(up: Up, running: Setup) -> None:
    pids = up.child_pids()
    assert set(pids) == {"control plane", "gateway"}
    up.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while "config reloaded" not in up.log:  # the gateway reloaded; nobody restarted
        assert time.monotonic() < deadline, up.log
        time.sleep(0.1)
    assert up.child_pids() == pids and up.proc.poll() is None
    assert httpx.get(f"{running.gateway_url}/api/x").status_code == 401

    code = up.stop()
    assert code == 0, up.log
    assert "garrison up: stopped" in up.log
    assert not any(_alive(p) for p in pids.values()), "a child outlived garrison up"
