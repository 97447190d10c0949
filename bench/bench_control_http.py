"""Control-plane throughput through the real HTTP API (TLS, uvicorn/httptools, Starlette), server on one core.

Issue 3's targets are "≥ 500 SVIDs/s and ≥ 1,500 tokens/s on one core" on the embedded default
(SQLite). bench_ca.py / bench_tokens.py measure the library; this measures what a client sees:

    .venv/bin/python bench/bench_control_http.py [--duration 8] [--connections 16] [--nice 0] \
        [--only healthz,tokens,svids,join] [--json out.json]

Setup (a temp dir): KEK, admin token, garrison.yaml on a free port, a store initialized with
``ControlPlane.open(..., initialize=True)``, ``ca/bundle.pem``; then ``garrison control-plane -c
garrison.yaml`` starts as a subprocess pinned to --server-cpu (``taskset``), and wrk (``-t`` threads)
runs on --client-cpu over HTTPS. Cells (--only):

- ``healthz``: GET /healthz — the framework + TLS floor;
- ``tokens``: POST /oauth2/token, client_credentials with private_key_jwt: K pre-signed RFC 7523
  assertions (each jti is single use), one body per request (wrk rotates through them, each wrk
  thread its own slice). K = duration × --expect-tokens × 1.5; if wrk sends more requests than K, the
  surplus bodies are replays, answered 400/401, and the row says "bodies ran out";
- ``svids``: POST /v1/svids (admin bearer token), the same CSR every time;
- ``join``: POST /v1/svids/join, K join tokens created beforehand (library, same store), one per request.

The library figures come from the same run: the same calls the handlers make in their thread-pool
function (``token_endpoint.handle`` on the parsed form; ``ca.issue`` + audit record + SVID object;
``redeem_join_token`` + audit + SVID object), in-process on a second store, this process pinned to
the server's core. Printed per cell: HTTP req/s, library calls/s and their ratio; the server's CPU
µs per request (utime+stime of the server's session from /proc, across the wrk run), the library's
CPU µs per call and their ratio; and ``1-core /s`` = 1e6 / server CPU µs per request, the rate one
whole core would sustain (on a shared machine the core is not wholly ours: the wall req/s is lower
and noisier, the CPU figures barely move). A non-2xx response in a cell makes its row say so (and
the exit status 1). ``--profile DIR`` runs py-spy on the server during each cell and prints where
its samples fall (TLS, HTTP parser, uvicorn, Starlette, thread-pool hop, store, signing, audit).

Needs wrk and taskset (scripts/install-bench-tools.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway_bench import (
    CLK_TCK,
    WRK_REPORT_LUA,
    BenchError,
    apply_nice,
    busy_pct,
    cpu_times,
    free_port,
    log,
    log_tail,
    session_ticks,
)

TD = "bench.local"
CLIENT_PATH = "svc/bench-client"
SVID_PATH = "svc/bench-workload"
AUDIENCE_SERVICE = "orders"
ASSERTION_TTL = 240.0  # under the server's 300 s cap; covers signing + the run
CELLS = ("healthz", "tokens", "svids", "join")
TARGETS = {"tokens": 1500.0, "svids": 500.0}  # issue 3, per second on one core
MARGIN = 1.5

# One request body per line (url-encoded form or one-line JSON), each wrk thread its own slice:
# thread t of T sends lines t, t+T, t+2T, ... so no body is ever sent twice while they last.
WRK_BODIES_LUA = (
    r"""
local counter = 0
setup = function(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
local reqs, n, i = {}, 0, 0
init = function(args)
  local path, ctype, file, nth = args[1], args[2], args[3], tonumber(args[4])
  local headers = {["Content-Type"] = ctype}
  if args[5] then headers["Authorization"] = "Bearer " .. args[5] end
  local k = 0
  for line in io.lines(file) do
    if #line > 0 then
      if k % nth == tid then
        n = n + 1
        reqs[n] = wrk.format("POST", path, headers, line)
      end
      k = k + 1
    end
  end
end
request = function()
  -- past the end: resend the last body (a replay, refused: counted as non-2xx and reported)
  if i < n then i = i + 1 end
  return reqs[i]
end
"""
    + WRK_REPORT_LUA
)

WRK_FIXED_LUA = (
    r"""
init = function(args)
  local f = io.open(args[1], "rb")
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[2]
end
"""
    + WRK_REPORT_LUA
)


# --------------------------------------------------------------------------- the control plane
def config_yaml(port: int) -> str:
    return f"""trust_domain: {TD}
services:
  {AUDIENCE_SERVICE}: {{}}
store:
  url: garrison.db
  kek: {{file: kek.key}}
control_plane:
  address: "127.0.0.1:{port}"
  server_names: [localhost, 127.0.0.1]
  admin_token_file: admin.token
  audit_log: audit.log
"""


def init_workdir(workdir: Path, port: int) -> str:
    """garrison.yaml, KEK, admin token, an initialized store and ca/bundle.pem; returns the token."""
    from garrison.config.loader import load_config
    from garrison.control.plane import ControlPlane, write_secret_file
    from garrison.identity.ca import generate_kek_file

    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)
    (workdir / "garrison.yaml").write_text(config_yaml(port))
    generate_kek_file(workdir / "kek.key")
    token = "gat_" + secrets.token_urlsafe(32)
    write_secret_file(workdir / "admin.token", token)
    plane = ControlPlane.open(load_config(workdir / "garrison.yaml"), workdir, initialize=True)
    try:
        (workdir / "ca").mkdir(exist_ok=True)
        (workdir / "ca" / "bundle.pem").write_bytes(plane.trust_anchors_pem())
    finally:
        plane.close()
    return token


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    ca_file: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def start_server(workdir: Path, port: int, cpu: int | None, nice: int) -> Server:
    garrison = Path(sys.executable).with_name("garrison")
    cmd = (["nice", "-n", str(nice)] if nice else []) + (
        ["taskset", "-c", str(cpu)] if cpu is not None else []
    )
    cmd += [str(garrison), "control-plane", "-c", "garrison.yaml"]
    log_path = workdir / "control-plane.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    apply_nice(proc.pid, nice)
    server = Server(proc, port, log_path, workdir / "ca" / "bundle.pem")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"control plane exited with {proc.returncode}:\n{log_tail(log_path)}")
        if request(server, "GET", "/healthz")[0] == 200:
            log(f"control plane on {server.base_url} (pid {proc.pid}, cpu {'any' if cpu is None else cpu})")
            return server
        time.sleep(0.2)
    server.stop()
    raise BenchError(f"control plane did not answer /healthz within 30 s:\n{log_tail(log_path)}")


def request(
    server: Server, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, bytes]:
    """(status, body) over TLS, verifying the server against ca/bundle.pem; 0 if nothing answered."""
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.base_url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except OSError:
        return 0, b""


# --------------------------------------------------------------------------- request material
def make_csr(spiffe_id: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Client:
    client_id: str
    key: Any = field(repr=False)
    token_url: str


def client_registration(base_url: str) -> tuple[Client, dict[str, Any]]:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": "k1", "alg": "ES256"}
    cid = f"spiffe://{TD}/{CLIENT_PATH}"
    reg = {
        "client_id": cid,
        "auth_method": "private_key_jwt",
        "scopes": ["read"],
        "audiences": [f"spiffe://{TD}/svc/{AUDIENCE_SERVICE}"],
        "jwks": [jwk],
    }
    return Client(cid, key, f"{base_url}/oauth2/token"), reg


def token_bodies(client: Client, k: int) -> list[str]:
    """K url-encoded client_credentials bodies, each with a fresh single-use assertion."""
    from garrison.identity.oauth.assertion import assertion_form, build_client_assertion

    now = time.time()
    aud = f"spiffe://{TD}/svc/{AUDIENCE_SERVICE}"
    return [
        urllib.parse.urlencode(
            assertion_form(
                client.client_id,
                build_client_assertion(
                    client.client_id, client.key, client.token_url, now=now, ttl=ASSERTION_TTL, kid="k1"
                ),
                grant_type="client_credentials",
                scope="read",
                audience=aud,
            )
        )
        for _ in range(k)
    ]


def join_tokens(workdir: Path, k: int) -> list[str]:
    """K join tokens for SVID_PATH, created with the library in the server's store."""
    from garrison.config.loader import load_config
    from garrison.control.plane import ControlPlane

    plane = ControlPlane.open(load_config(workdir / "garrison.yaml"), workdir)
    try:
        sid = f"spiffe://{TD}/{SVID_PATH}"
        return [plane.ca.create_join_token(sid, ttl=3600) for _ in range(k)]
    finally:
        plane.close()


# --------------------------------------------------------------------------- library figures
@dataclass
class LibRate:
    per_s: float  # wall, this process pinned to the server's core
    cpu_us: float  # thread CPU per call


def lib_rate(fn: Callable[[int], object], n: int) -> LibRate:
    for i in range(50):  # warm-up (compiled SQL, unsealed key) on items n..n+49: each is single use
        fn(n + i)
    c0, w0 = time.thread_time(), time.perf_counter()
    for i in range(n):
        fn(i)
    cpu, wall = time.thread_time() - c0, time.perf_counter() - w0
    return LibRate(n / wall, cpu / n * 1e6)


def library_figures(root: Path, cells: list[str], n: int, cpu: int | None) -> dict[str, LibRate]:
    """The handlers' thread-pool work, in-process, on a second store of the same shape."""
    from urllib.parse import parse_qs

    from garrison.config.loader import load_config
    from garrison.control.app import svid_object
    from garrison.control.plane import ControlPlane
    from garrison.control.server import open_audit
    from garrison.identity.oauth.client_auth import ClientAuthContext
    from garrison.identity.oauth.sql_clients import registration_from_json

    workdir = root / "library"
    init_workdir(workdir, free_port())
    audit, close_audit = open_audit(workdir, "audit.log")
    plane = ControlPlane.open(load_config(workdir / "garrison.yaml"), workdir, audit=audit)
    saved = os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    out: dict[str, LibRate] = {}
    try:
        if "tokens" in cells:
            client, reg = client_registration(plane.settings.base_url)
            plane.clients.register(registration_from_json(reg))
            forms = [parse_qs(b, keep_blank_values=True) for b in token_bodies(client, n + 50)]
            ctx = ClientAuthContext(None)
            handle = plane.tokens.token_endpoint.handle

            def token(i: int) -> object:
                r = handle(forms[i], ctx, plane.clock())
                if r.status != 200:
                    raise BenchError(f"library token request refused: {r.body()}")
                return r.body()

            out["tokens"] = lib_rate(token, n)
        csr = make_csr(f"spiffe://{TD}/{SVID_PATH}")
        if "svids" in cells:

            def issue(i: int) -> object:
                svid = plane.ca.issue(csr)
                plane.audit.append(
                    "svid.issue", actor="admin-token", spiffe_id=str(svid.spiffe_id), serial=svid.serial
                )
                return svid_object(plane, svid)

            out["svids"] = lib_rate(issue, n)
        if "join" in cells:
            sid = f"spiffe://{TD}/{SVID_PATH}"
            toks = [plane.ca.create_join_token(sid, ttl=3600) for _ in range(n + 50)]

            def join(i: int) -> object:
                svid = plane.ca.redeem_join_token(toks[i], csr)
                plane.audit.append(
                    "svid.join", actor="join-token", spiffe_id=str(svid.spiffe_id), serial=svid.serial
                )
                return svid_object(plane, svid)

            out["join"] = lib_rate(join, n)
    finally:
        os.sched_setaffinity(0, saved)
        plane.close()
        close_audit()
    return out


# --------------------------------------------------------------------------- wrk
@dataclass
class Cell:
    name: str
    requests: int = 0
    seconds: float = 0.0
    non2xx: int = 0
    socket_errors: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_us: float | None = None
    server_busy: float | None = None
    bodies: int | None = None
    lib: LibRate | None = None
    note: str = ""
    profile: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(
    server: Server, cell: Cell, args: argparse.Namespace, script: Path, path: str, script_args: list[str]
) -> Cell:
    cmd = ["taskset", "-c", args.client_cpu] if args.client_cpu and shutil.which("taskset") else []
    cmd += [
        "wrk",
        "-t",
        str(args.threads),
        "-c",
        str(args.connections),
        "-d",
        f"{args.duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        server.base_url + path,
    ]
    if script_args:
        cmd += ["--", *script_args]
    spy = start_profile(server, cell.name, args)
    t0, c0 = session_ticks(server.pid), cpu_times()
    if args.nice:
        cmd = ["nice", "-n", str(args.nice), *cmd]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=bool(args.nice)
    )
    apply_nice(proc.pid, args.nice)
    stdout, stderr = proc.communicate(timeout=args.duration + 60)
    out = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    t1, c1 = session_ticks(server.pid), cpu_times()
    if spy is not None:
        spy.wait(timeout=args.duration + 30)
        cell.profile = summarize_profile(args.profile / f"{cell.name}.txt")
    (script.parent / f"wrk-{cell.name}.out").write_text(out.stdout + out.stderr)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    doc = json.loads(line[len("WRKJSON ") :])
    cell.requests = int(doc["requests"])
    cell.seconds = doc["duration_us"] / 1e6
    cell.non2xx = int(doc["err_status"])
    cell.socket_errors = sum(int(doc[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    cell.p50_ms, cell.p99_ms = doc["lat_p50_us"] / 1e3, doc["lat_p99_us"] / 1e3
    if cell.requests:
        cell.cpu_us = (t1 - t0) / CLK_TCK / cell.requests * 1e6
    if args.server_cpu is not None:
        cell.server_busy = busy_pct(c0, c1, int(args.server_cpu))
    if cell.bodies is not None and cell.requests > cell.bodies:
        cell.note = f"bodies ran out ({cell.requests} requests > {cell.bodies} bodies)"
    elif cell.non2xx:
        cell.note = f"{cell.non2xx} non-2xx responses"
    return cell


# --------------------------------------------------------------------------- py-spy
# Where the server's samples fall: first match wins, tested leaf-first on each stack, so a frame
# counts for the innermost layer it is in (a JWT signed inside a Starlette handler is "signing").
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("TLS (ssl module, OpenSSL libssl)", ("(ssl.py", "sslproto", "libssl", "_ssl.")),
    (
        "signing/verify (cryptography, PyJWT, garrison tokens.py)",
        ("(cryptography/", "(jwt/", "_rust.abi3", "garrison/identity/tokens.py"),
    ),
    (
        "store (SQLAlchemy, sqlite3, garrison store/sql_*)",
        ("(sqlalchemy/", "(sqlite3/", "libsqlite3", "_sqlite3", "garrison/store/", "/sql_"),
    ),
    ("audit log", ("garrison/telemetry/audit",)),
    ("garrison (other)", ("(garrison/",)),
    ("HTTP parser (httptools, h11)", ("(httptools/", "(h11/", "garrison/control/protocol.py")),
    ("uvicorn", ("(uvicorn/",)),
    ("Starlette", ("(starlette/",)),
    (
        "thread-pool hop (anyio, threading, queue)",
        ("(anyio/", "concurrent/futures", "(threading.py", "(queue.py"),
    ),
    ("event loop (uvloop, asyncio)", ("uvloop", "(asyncio/", "selectors.py", "Runner.run")),
    (
        "other stdlib (json, urllib, email, typing, ...)",
        ("(json/", "(urllib/", "(email/", "(typing.py", "<frozen"),
    ),
)
# A thread-pool worker waiting for work, or the loop waiting for events: not CPU.
IDLE = ("Condition.wait (threading.py", "epoll_wait", "Lock.acquire (threading.py")


def start_profile(server: Server, name: str, args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    """py-spy on the server for the wrk run (on the client core: its cost is not the server's)."""
    if args.profile is None:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    args.profile.mkdir(parents=True, exist_ok=True)
    cmd = ["taskset", "-c", args.client_cpu] if args.client_cpu else []
    cmd += [
        spy,
        "record",
        "--pid",
        str(server.pid),
        "--duration",
        str(args.duration),
        "--rate",
        "250",
        "--format",
        "raw",
        "-o",
        str(args.profile / f"{name}.txt"),
    ]
    # --native needs to pause the target; --gil keeps only the GIL holder's stacks
    cmd += {"native": ["--native"], "gil": ["--gil", "--nonblocking"]}.get(
        args.profile_mode, ["--nonblocking"]
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached before the load starts
    return proc


def summarize_profile(path: Path, top: int = 12) -> str:
    """Share of samples per layer (innermost frame's layer) and the top self-time functions."""
    layers: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = idle = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return "(no profile)"
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if any(m in f for f in frames for m in IDLE):
            idle += n
            continue
        total += n
        leaf = frames[-1]
        leaves[leaf] = leaves.get(leaf, 0) + n
        layer = next(
            (name for f in reversed(frames) for name, pats in LAYERS if any(p in f for p in pats)), "other"
        )
        layers[layer] = layers.get(layer, 0) + n
    if not total:
        return "(no samples)"
    out = [f"  {total} busy samples ({idle} idle ones left out); by layer (innermost frame):"]
    out += [f"    {100 * n / total:5.1f}%  {k}" for k, n in sorted(layers.items(), key=lambda kv: -kv[1])]
    out.append("  top self (leaf) frames:")
    out += [
        f"    {100 * n / total:5.1f}%  {k}" for k, n in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------- main
def table(cells: list[Cell]) -> str:
    head = (
        f"{'cell':8} {'HTTP req/s':>10} {'library/s':>10} {'HTTP/lib':>8} {'srv CPU µs/req':>14} "
        f"{'lib CPU µs':>10} {'CPU ratio':>9} {'1-core /s':>9} {'srv core %':>10} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'target':>7}  note"
    )
    rows = [head, "-" * len(head)]
    for c in cells:
        lib = f"{c.lib.per_s:10.0f}" if c.lib else f"{'-':>10}"
        ratio = f"{c.rps / c.lib.per_s:8.2f}" if c.lib else f"{'-':>8}"
        lcpu = f"{c.lib.cpu_us:10.0f}" if c.lib else f"{'-':>10}"
        cpu = f"{c.cpu_us:14.0f}" if c.cpu_us is not None else f"{'-':>14}"
        cratio = f"{c.cpu_us / c.lib.cpu_us:9.2f}" if c.lib and c.cpu_us else f"{'-':>9}"
        core = f"{1e6 / c.cpu_us:9.0f}" if c.cpu_us else f"{'-':>9}"
        busy = f"{c.server_busy:10.0f}" if c.server_busy is not None else f"{'-':>10}"
        target = TARGETS.get(c.name)
        tgt = f"{target:7.0f}" if target else f"{'-':>7}"
        note = c.note or ("ok" if not target else ("meets target" if c.rps >= target else "below target"))
        if c.socket_errors:
            note += f"; {c.socket_errors} socket errors"
        rows.append(
            f"{c.name:8} {c.rps:10.0f} {lib} {ratio} {cpu} {lcpu} {cratio} {core} {busy} {c.p50_ms:7.1f} "
            f"{c.p99_ms:7.1f} {tgt}  {note}"
        )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--only", default=",".join(CELLS), help=f"cells, comma-separated: {','.join(CELLS)}")
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the server and wrk under nice -n N (-10 as root on a shared machine)",
    )
    ap.add_argument("--server-cpu", default="0", help="core for the server ('' = no pinning)")
    ap.add_argument("--client-cpu", default="1", help="core list for wrk ('' = no pinning)")
    ap.add_argument("--expect-tokens", type=float, default=2500, help="tokens/s to size the bodies for")
    ap.add_argument("--expect-joins", type=float, default=1000, help="joins/s to size the join tokens for")
    ap.add_argument("--lib-n", type=int, default=2000, help="calls per library measurement")
    ap.add_argument("--profile", type=Path, help="py-spy the server during each cell; raw stacks here")
    ap.add_argument(
        "--profile-mode",
        choices=("default", "gil", "native"),
        default="default",
        help="py-spy: on-CPU threads (default), only the GIL holder, or with C frames",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, wrk output)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    cells = [c.strip() for c in args.only.split(",") if c.strip()]
    if bad := sorted(set(cells) - set(CELLS)):
        ap.error(f"unknown cell(s) {bad}; choose from {', '.join(CELLS)}")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not on PATH: run scripts/install-bench-tools.sh")
    ncpu = os.cpu_count() or 1
    if ncpu < 2 or shutil.which("taskset") is None:
        args.server_cpu = args.client_cpu = ""
        log("fewer than 2 cores or no taskset: no pinning (figures are not 'one core')")
    server_cpu = int(args.server_cpu) if args.server_cpu != "" else None
    args.server_cpu = server_cpu

    if args.nice:  # the library figures run in this process, on the server's core: same priority
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    root = Path(tempfile.mkdtemp(prefix="garrison-cp-bench-"))
    server: Server | None = None
    results: list[Cell] = []
    try:
        log(f"library figures (n={args.lib_n}, this process on cpu {server_cpu})")
        lib = library_figures(root, cells, args.lib_n, server_cpu)
        workdir = root / "server"
        port = free_port()
        admin = init_workdir(workdir, port)
        k_join = int(args.duration * args.expect_joins * MARGIN) if "join" in cells else 0
        join_file = root / "join-bodies.txt"
        if k_join:
            t0 = time.monotonic()
            csr = make_csr(f"spiffe://{TD}/{SVID_PATH}")
            with open(join_file, "w") as f:
                for tok in join_tokens(workdir, k_join):
                    f.write(json.dumps({"join_token": tok, "csr": csr}) + "\n")
            log(f"{k_join} join tokens in {time.monotonic() - t0:.1f} s")
        server = start_server(workdir, port, server_cpu, args.nice)
        bodies_lua = root / "bodies.lua"
        bodies_lua.write_text(WRK_BODIES_LUA)
        for name in cells:
            cell = Cell(name, lib=lib.get(name))
            if name == "healthz":
                script = root / "report.lua"
                script.write_text(WRK_REPORT_LUA)
                results.append(run_wrk(server, cell, args, script, "/healthz", []))
            elif name == "tokens":
                client, reg = client_registration(server.base_url)
                status, body = request(server, "PUT", "/v1/clients", reg, admin)
                if status not in (200, 201):
                    raise BenchError(f"client registration refused: {status} {body[:300]!r}")
                k = int(args.duration * args.expect_tokens * MARGIN)
                t0 = time.monotonic()
                lines = token_bodies(client, k)
                (root / "token-bodies.txt").write_text("\n".join(lines) + "\n")
                log(f"{k} signed assertions in {time.monotonic() - t0:.1f} s")
                cell.bodies = k
                ctype = "application/x-www-form-urlencoded"
                tb = str(root / "token-bodies.txt")
                results.append(
                    run_wrk(
                        server,
                        cell,
                        args,
                        bodies_lua,
                        "/oauth2/token",
                        ["/oauth2/token", ctype, tb, str(args.threads)],
                    )
                )
            elif name == "svids":
                body_file = root / "svid-body.json"
                body_file.write_text(json.dumps({"csr": make_csr(f"spiffe://{TD}/{SVID_PATH}")}))
                script = root / "fixed.lua"
                script.write_text(WRK_FIXED_LUA)
                results.append(run_wrk(server, cell, args, script, "/v1/svids", [str(body_file), admin]))
            elif name == "join":
                cell.bodies = k_join
                results.append(
                    run_wrk(
                        server,
                        cell,
                        args,
                        bodies_lua,
                        "/v1/svids/join",
                        ["/v1/svids/join", "application/json", str(join_file), str(args.threads)],
                    )
                )
            log(f"{name}: {results[-1].rps:.0f} req/s")
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"\nserver: garrison control-plane (SQLite, TLS, uvicorn httptools) on cpu {server_cpu}; "
        f"wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s on cpu {args.client_cpu or 'any'}; nice {args.nice}"
    )
    print(table(results))
    for c in results:
        if c.profile:
            print(f"\npy-spy, {c.name} (server process, all threads, on-CPU samples):\n{c.profile}")
    if args.json:
        args.json.write_text(
            json.dumps(
                [{**c.__dict__, "rps": c.rps, "lib": c.lib and c.lib.__dict__} for c in results], indent=2
            )
        )
    return 1 if any(c.non2xx or c.note.startswith("bodies") for c in results) else 0


if __name__ == "__main__":
    sys.exit(main())
