"""Gateway benchmark: garrison vs HAProxy 2.6 + JWT vs a direct upstream, in one run.

Every figure is printed next to a baseline measured in the same run (HAProxy + JWT, and the
direct upstream): the machines are shared and noisy, so absolute req/s mean little across runs.

    python bench/gateway_bench.py --duration 10 --connections 50 --threads 1 \
        --only haproxy,direct,garrison --tokens-distinct 20000 --json out.json

Targets (--only): direct (wrk -> upstream), haproxy (HAProxy + ES256 jwt_verify + claims + a
per-subject stick-table limit), haproxy-plain (same HAProxy, no rules), garrison (the full
pipeline: `garrison gateway --config FILE`). Token modes (--modes): `repeated` (one token on
every request: garrison's verified-token cache hits) and `distinct` (wrk rotates through
--tokens-distinct valid tokens, more than the cache holds, so every request misses).

CPU layout (2 cores, see bench/README.md): the server under test (garrison or HAProxy) runs
alone on --server-cpu; the upstream and wrk share --aux-cpu, so the upstream's cost is not
charged to the gateway's core. For the `direct` rows the upstream is moved to --server-cpu.
CPU µs/request = delta of utime+stime (all threads, every process of the server's session)
from /proc/<pid>/stat across the measured wrk run, divided by the requests wrk completed.

See bench/README.md. Needs haproxy (>= 2.5), wrk, curl, taskset: scripts/install-bench-tools.sh.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HAPROXY_TEMPLATE = HERE / "haproxy_jwt.cfg.tmpl"
UPSTREAM_SCRIPT = HERE / "upstream.py"

ISSUER = "https://bench.local"
AUDIENCE = "bench-api"
KID = "k1"
HAPROXY_RATE_LIMIT = 100_000_000  # per subject per 10 s: tracked on every request, never trips
ALL_TARGETS = ("direct", "haproxy", "haproxy-plain", "garrison")
MODES = ("repeated", "distinct")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Issue targets (garrison vs HAProxy+JWT, same run)
TARGET_CPU_US_CACHED = 45.0
TARGET_RATIO_CACHED = 2.5
TARGET_RATIO_DISTINCT = 0.9
TARGET_P99_MS = 5.0

WRK_REPORT_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_mean_us":%.2f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""

# Distinct mode: requests pre-formatted once per token in init(); request() only indexes.
WRK_ROTATE_LUA = (
    r"""
local reqs, n, i = {}, 0, 0
init = function(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      n = n + 1
      reqs[n] = wrk.format(nil, nil, {["Authorization"] = "Bearer " .. line})
    end
  end
  -- threads start at different offsets so they do not send the same token at once
  i = math.random(n) - 1
end
request = function() i = i % n + 1; return reqs[i] end
"""
    + WRK_REPORT_LUA
)


class BenchError(RuntimeError):
    """A setup or enforcement failure: the benchmark stops and says why."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- processes


@dataclasses.dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


class Processes:
    """Everything the harness started; stop_all() ends each one's session (SIGTERM, then KILL)."""

    def __init__(self, run_dir: Path, nice: int = 0) -> None:
        self.run_dir = run_dir
        self.nice = nice
        self.servers: dict[str, Server] = {}
        self.commands: list[str] = []

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        port: int,
        cpu: int | None,
        ready_timeout: float = 10.0,
        env: dict[str, str] | None = None,
    ) -> Server:
        full = (["nice", "-n", str(self.nice)] if self.nice else []) + (
            ["taskset", "-c", str(cpu)] if cpu is not None else []
        )
        full += list(cmd)
        self.commands.append(" ".join(full) + f"   # {name}")
        log_path = self.run_dir / f"{name}.log"
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                full,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        apply_nice(proc.pid, self.nice)
        server = Server(name, proc, port, log_path)
        self.servers[name] = server
        wait_http(server, ready_timeout)
        log(f"started {name} on 127.0.0.1:{port} (pid {proc.pid}, cpu {cpu if cpu is not None else 'any'})")
        return server

    def stop(self, name: str) -> None:
        server = self.servers.pop(name, None)
        if server is None or server.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.proc.wait(timeout=5)
        log(f"stopped {name} (pid {server.pid}, exit {server.proc.returncode})")

    def stop_all(self) -> None:
        for name in reversed(list(self.servers)):
            self.stop(name)


def apply_nice(pid: int, nice: int) -> None:
    """`nice` alone does nothing across sessions when the kernel groups them (autogroup): each
    session is scheduled as one group. So also set the session's autogroup nice (root only)."""
    if not nice:
        return
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def wait_http(server: Server, timeout: float) -> None:
    """Up = any HTTP answer on the port. Fails fast if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(
                f"{server.name} exited with {server.proc.returncode} before answering:\n"
                f"{log_tail(server.log_path)}"
            )
        if http_get(server.port, "/")[0] > 0:
            return
        time.sleep(0.2)
    raise BenchError(
        f"{server.name} did not answer on :{server.port} within {timeout:.0f} s:\n{log_tail(server.log_path)}"
    )


def http_get(port: int, path: str, token: str | None = None, timeout: float = 3.0) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answered."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # loopback only
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def curl_status(port: int, token: str | None) -> int:
    """Status of GET / through curl (the brief's independent check: a client other than ours)."""
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3"]
    if token is not None:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*cmd, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=False)
    return int(out.stdout or 0)


def set_affinity(pid: int, cpu: int) -> None:
    """Pin every thread of a running process (taskset -a -p)."""
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True, capture_output=True)


# --------------------------------------------------------------------------- CPU accounting


def session_ticks(sid: int) -> int:
    """utime+stime (clock ticks, all threads) of every live process in session `sid`."""
    total = 0
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            data = Path(stat).read_text()
        except OSError:
            continue
        fields = data[data.rfind(")") + 2 :].split()  # fields[0] is field 3 (state)
        if int(fields[3]) == sid:  # field 6: session
            total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return total


def other_thread_ticks(pid: int) -> int:
    """utime+stime of the threads of `pid` other than its main thread (e.g. a log writer)."""
    total = 0
    for stat in glob.glob(f"/proc/{pid}/task/[0-9]*/stat"):
        if stat == f"/proc/{pid}/task/{pid}/stat":
            continue
        try:
            data = Path(stat).read_text()
        except OSError:
            continue
        fields = data[data.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total


def cpu_times() -> dict[int, tuple[int, int]]:
    """Per-CPU (busy, total) ticks from /proc/stat; key -1 = all CPUs."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu"):
                parts = line.split()
                vals = [int(v) for v in parts[1:9]]
                idle = vals[3] + vals[4]
                out[int(parts[0][3:]) if parts[0] != "cpu" else -1] = (sum(vals) - idle, sum(vals))
    return out


def busy_pct(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], cpu: int) -> float | None:
    if cpu not in before or cpu not in after:
        return None
    busy = after[cpu][0] - before[cpu][0]
    total = after[cpu][1] - before[cpu][1]
    return round(100.0 * busy / total, 1) if total else None


# --------------------------------------------------------------------------- keys and tokens


@dataclasses.dataclass
class Tokens:
    public_pem: Path
    repeated: str
    distinct_file: Path
    distinct_count: int
    invalid: dict[str, str]


def make_tokens(run_dir: Path, distinct: int) -> Tokens:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    pub = run_dir / "es256-public.pem"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "bench-client",
        "iat": now,
        "nbf": now - 60,
        "exp": now + 86_400,
    }
    headers = {"kid": KID}

    def enc(claims: dict[str, Any], k: Any = key) -> str:
        return jwt.encode(claims, k, algorithm="ES256", headers=headers)

    repeated = enc(base)
    (run_dir / "token.jwt").write_text(repeated + "\n")
    t0 = time.monotonic()
    distinct_file = run_dir / "tokens-distinct.txt"
    with open(distinct_file, "w") as f:
        for i in range(distinct):
            f.write(enc(dict(base, sub=f"bench-client-{i}", jti=f"j{i}")) + "\n")
    log(f"ES256 key pair + {distinct:,} distinct tokens in {time.monotonic() - t0:.1f} s ({run_dir})")
    h, p, _ = repeated.split(".")
    invalid = {
        "bad-signature": enc(base, other),
        "expired": enc(dict(base, iat=now - 7200, nbf=now - 7200, exp=now - 3600)),
        "wrong-audience": enc(dict(base, aud="someone-else")),
        "wrong-issuer": enc(dict(base, iss="https://evil.example")),
        "alg-none": jwt.encode(base, None, algorithm="none", headers=headers),  # type: ignore[arg-type]
        "garbage": "not.a.jwt",
        "truncated-signature": f"{h}.{p}.AAAA",
    }
    return Tokens(pub, repeated, distinct_file, distinct, invalid)


# --------------------------------------------------------------------------- configs


def render_haproxy(run_dir: Path, ports: dict[str, int], pubkey: Path) -> Path:
    text = HAPROXY_TEMPLATE.read_text()
    values = {
        "RUN_DIR": str(run_dir),
        "PORT_JWT": ports["haproxy"],
        "PORT_PROBE": ports["haproxy-probe"],
        "PORT_PLAIN": ports["haproxy-plain"],
        "PORT_UPSTREAM": ports["upstream"],
        "PUBKEY": str(pubkey),
        "ISSUER": ISSUER,
        "AUDIENCE": AUDIENCE,
        "RATE_LIMIT": HAPROXY_RATE_LIMIT,
    }
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    left = re.findall(
        r"@[A-Z_]+@", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    )
    if left:
        raise BenchError(f"unrendered placeholders in {HAPROXY_TEMPLATE}: {sorted(set(left))}")
    cfg = run_dir / "haproxy.cfg"
    cfg.write_text(text)
    return cfg


def render_garrison(run_dir: Path, ports: dict[str, int], pubkey: Path) -> Path:
    config: dict[str, Any] = {
        "trust_domain": "bench.local",
        "listeners": [{"name": "edge", "address": f"127.0.0.1:{ports['garrison']}"}],
        "issuers": [
            {
                "name": "bench",
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "algorithms": ["ES256"],
                "keys": [{"kid": KID, "pem_file": str(pubkey)}],
            }
        ],
        "routes": [
            {
                "name": "api",
                "path": "/**",
                "upstream": f"http://127.0.0.1:{ports['upstream']}",
                "methods": ["GET"],
            }
        ],
        "policies": [{"name": "bench-clients", "routes": ["api"], "from": {"issuers": ["bench"]}}],
        "rate_limits": [{"name": "per-subject", "key": ["subject"], "rate": 1_000_000, "burst": 1_000_000}],
        "telemetry": {
            "admin": {"address": f"127.0.0.1:{ports['garrison-admin']}"},
            "decision_log": {"path": str(run_dir / "decisions.jsonl")},
        },
    }
    path = run_dir / "garrison.yaml"
    try:
        import yaml
    except ImportError:  # JSON is YAML
        path.write_text(json.dumps(config, indent=2) + "\n")
    else:
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def find_garrison(explicit: str | None) -> str:
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "garrison"
    if beside.exists():
        return str(beside)
    found = shutil.which("garrison")
    if not found:
        raise BenchError("no `garrison` console script (pip install -e . in the venv, or --garrison-bin)")
    return found


# --------------------------------------------------------------------------- checks


def check_enforcement(name: str, port: int, tokens: Tokens) -> list[str]:
    """A gateway that does not enforce is not worth benchmarking: valid -> 200, the rest -> 401."""
    results = [("no token", None, 401), ("valid", tokens.repeated, 200)]
    first_distinct = tokens.distinct_file.open().readline().strip()
    results.append(("valid (distinct #0)", first_distinct, 200))
    results += [(k, v, 401) for k, v in tokens.invalid.items()]
    failures = []
    line = []
    for label, tok, want in results:
        got = curl_status(port, tok)
        line.append(f"{label}={got}")
        if got != want:
            failures.append(f"{name}: {label}: expected {want}, got {got}")
    log(f"auth checks {name}: " + " ".join(line) + ("  OK" if not failures else "  FAILED"))
    return failures


def check_haproxy_limiter(port: int, token: str) -> list[str]:
    codes = [curl_status(port, token) for _ in range(8)]
    ok = codes == [200] * 5 + [429] * 3
    log(f"HAProxy stick-table probe (limit 5/10 s): {codes} {'OK' if ok else 'FAILED'}")
    return [] if ok else [f"haproxy rate-limit probe: {codes}"]


def haproxy_table(run_dir: Path) -> str:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(run_dir / "haproxy.sock"))
            s.sendall(b"show table st_clients\n")
            buf = b""
            while chunk := s.recv(65536):
                buf += chunk
    except OSError as e:
        return f"(stats socket: {e})"
    head = buf.decode(errors="replace").splitlines()[:1]
    rates = [int(m) for m in re.findall(rb"http_req_rate\(\d+\)=(\d+)", buf)]
    return f"{head[0] if head else ''}; entries={len(rates)} sum http_req_rate={sum(rates)}"


# --------------------------------------------------------------------------- wrk


@dataclasses.dataclass
class Row:
    round: int
    target: str
    mode: str
    rps: float
    requests: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int
    server_cpu_us: float | None
    server_other_threads_cpu_us: float | None  # part of server_cpu_us spent outside the main thread
    upstream_cpu_us: float | None
    wrk_cpu_pct: float
    server_core_busy_pct: float | None
    aux_core_busy_pct: float | None
    server_core_share_pct: float | None  # how much of one core the server got during the run
    upstream_core_share_pct: float | None  # the same for the upstream (None for direct: it is the server)
    idle_load_pct: float | None  # both cores' busy % in a short idle window before the run (others' load)


def parse_wrk(output: str) -> dict[str, Any]:
    """The WRKJSON line our done() hook prints; falls back to wrk's text summary."""
    for line in output.splitlines():
        if line.startswith("WRKJSON "):
            d: dict[str, Any] = json.loads(line[8:])
            return d

    def dur_us(text: str) -> float:
        m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
        if not m:
            raise BenchError(f"cannot parse wrk latency {text!r}")
        return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[m.group(2)]

    m_req = re.search(r"(\d+) requests in ([\d.]+)(\w+),", output)
    if not m_req:
        raise BenchError(f"cannot parse wrk output:\n{output}")
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", output, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "requests": int(m_req.group(1)),
        "duration_us": dur_us(m_req.group(2) + m_req.group(3)),
        "lat_p50_us": dur_us(pct["50"]),
        "lat_p90_us": dur_us(pct["90"]),
        "lat_p99_us": dur_us(pct["99"]),
        "lat_max_us": 0,
        "err_status": int(non2xx.group(1)) if non2xx else 0,
        "err_connect": 0,
        "err_read": 0,
        "err_write": 0,
        "err_timeout": 0,
    }


class Wrk:
    def __init__(self, args: argparse.Namespace, run_dir: Path, tokens: Tokens) -> None:
        self.args = args
        self.tokens = tokens
        self.run_dir = run_dir
        self.report_lua = run_dir / "wrk-report.lua"
        self.report_lua.write_text(WRK_REPORT_LUA)
        self.rotate_lua = run_dir / "wrk-rotate.lua"
        self.rotate_lua.write_text(WRK_ROTATE_LUA)
        self.commands: list[str] = []

    def argv(self, port: int, mode: str, duration: float) -> list[str]:
        a = self.args
        base = (["nice", "-n", str(a.nice)] if a.nice else []) + [
            "taskset",
            "-c",
            str(a.aux_cpu),
            "wrk",
            f"-t{a.threads}",
            f"-c{a.connections}",
            f"-d{duration:g}s",
            "--latency",
            "--timeout",
            "5s",
        ]
        url = f"http://127.0.0.1:{port}/"
        if mode == "repeated":
            return [
                *base,
                "-s",
                str(self.report_lua),
                "-H",
                f"Authorization: Bearer {self.tokens.repeated}",
                url,
            ]
        return [*base, "-s", str(self.rotate_lua), url, "--", str(self.tokens.distinct_file)]

    def run(self, port: int, mode: str, duration: float) -> tuple[str, float]:
        """wrk's stdout and its CPU % of one core (rusage of the child)."""
        cmd = self.argv(port, mode, duration)
        shown = [
            (
                f'"Authorization: Bearer $(cat {self.run_dir}/token.jwt)"'
                if c.startswith("Authorization:")
                else c
            )
            for c in cmd
        ]
        if " ".join(shown) not in self.commands:
            self.commands.append(" ".join(shown))
        t0 = time.monotonic()
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=bool(self.args.nice),
            )
            apply_nice(proc.pid, self.args.nice)
            deadline = t0 + duration + 30
            try:
                while True:
                    pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        proc.returncode = os.waitstatus_to_exitcode(status)
                        break
                    if time.monotonic() > deadline:
                        raise BenchError(f"wrk did not finish: {' '.join(shown)}")
                    time.sleep(0.05)
            except BaseException:  # timeout, Ctrl-C, SIGTERM: never leave wrk loading a port
                if proc.returncode is None:
                    proc.kill()
                    proc.wait()
                raise
            wall = time.monotonic() - t0
            out.seek(0)
            text = out.read().decode(errors="replace")
        if proc.returncode != 0:
            raise BenchError(f"wrk failed ({proc.returncode}): {text}")
        return text, round(100.0 * (ru.ru_utime + ru.ru_stime) / wall, 1)


# --------------------------------------------------------------------------- the run


def measure(
    args: argparse.Namespace, procs: Processes, wrk: Wrk, rnd: int, target: str, mode: str, port: int
) -> Row:
    server = procs.servers[
        "upstream" if target == "direct" else ("haproxy" if target.startswith("haproxy") else target)
    ]
    upstream = procs.servers["upstream"]
    if target == "direct":  # the upstream is the server under test: give it the server core
        set_affinity(upstream.pid, args.server_cpu)
    try:
        wrk.run(port, mode, args.warmup)  # discarded
        time.sleep(0.2)
        i0 = cpu_times()  # our servers are idle now: whatever is busy is someone else's load
        time.sleep(args.idle_probe)
        i1 = cpu_times()
        s0, u0, c0 = session_ticks(server.pid), session_ticks(upstream.pid), cpu_times()
        t0 = other_thread_ticks(server.pid)
        text, wrk_cpu = wrk.run(port, mode, args.duration)
        s1, u1, c1 = session_ticks(server.pid), session_ticks(upstream.pid), cpu_times()
        t1 = other_thread_ticks(server.pid)
    finally:
        if target == "direct":
            set_affinity(upstream.pid, args.upstream_cpu)
    w = parse_wrk(text)
    n = int(w["requests"])

    def per_req(ticks: int) -> float | None:
        return round(ticks / CLK_TCK * 1e6 / n, 1) if n else None

    row = Row(
        round=rnd,
        target=target,
        mode=mode,
        rps=round(n / (w["duration_us"] / 1e6), 1),
        requests=n,
        p50_ms=w["lat_p50_us"] / 1000,
        p90_ms=w["lat_p90_us"] / 1000,
        p99_ms=w["lat_p99_us"] / 1000,
        max_ms=w["lat_max_us"] / 1000,
        non2xx=int(w["err_status"]),
        socket_errors=sum(int(w[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout")),
        server_cpu_us=per_req(s1 - s0),
        server_other_threads_cpu_us=per_req(t1 - t0),
        upstream_cpu_us=None if target == "direct" else per_req(u1 - u0),
        wrk_cpu_pct=wrk_cpu,
        server_core_busy_pct=busy_pct(c0, c1, args.server_cpu),
        aux_core_busy_pct=busy_pct(c0, c1, args.aux_cpu),
        server_core_share_pct=round(100.0 * (s1 - s0) / CLK_TCK / (w["duration_us"] / 1e6), 1),
        upstream_core_share_pct=None
        if target == "direct"
        else round(100.0 * (u1 - u0) / CLK_TCK / (w["duration_us"] / 1e6), 1),
        idle_load_pct=busy_pct(i0, i1, -1),
    )
    log(
        f"r{rnd} {target:<13} {mode:<8} {row.rps:>9,.0f} req/s"
        f"  p50 {row.p50_ms:.2f} ms  p99 {row.p99_ms:.2f} ms"
        f"  server {fmt(row.server_cpu_us, 1)} µs/req"
        f" (other threads {fmt(row.server_other_threads_cpu_us, 1)})"
        f"  upstream {fmt(row.upstream_cpu_us, 1)} µs/req"
        f"  non2xx {row.non2xx}  cores {fmt(row.server_core_busy_pct, 0)}%/{fmt(row.aux_core_busy_pct, 0)}%"
        f"  wrk {row.wrk_cpu_pct:.0f}%  server got {fmt(row.server_core_share_pct, 0)}% of its core"
        f"  (idle-window load {fmt(row.idle_load_pct, 0)}%)"
    )
    if target == "haproxy":
        log(f"  st_clients after the run: {haproxy_table(procs.run_dir)}")
    return row


def fmt(v: float | None, nd: int = 2) -> str:
    return "-" if v is None else f"{v:,.{nd}f}"


def median_rows(rows: list[Row]) -> dict[tuple[str, str], dict[str, Any]]:
    """Median over rounds of each figure, per (target, mode)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    keys: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        keys.setdefault((r.target, r.mode), []).append(r)
    for k, rs in keys.items():
        agg: dict[str, Any] = {"rounds": len(rs)}
        for f in (
            "rps",
            "p50_ms",
            "p99_ms",
            "server_cpu_us",
            "server_other_threads_cpu_us",
            "upstream_cpu_us",
            "wrk_cpu_pct",
            "aux_core_busy_pct",
            "server_core_share_pct",
            "idle_load_pct",
        ):
            vals = [getattr(r, f) for r in rs if getattr(r, f) is not None]
            agg[f] = statistics.median(vals) if vals else None
        agg["non2xx"] = sum(r.non2xx for r in rs)
        agg["socket_errors"] = sum(r.socket_errors for r in rs)
        out[k] = agg
    return out


def ratio(rows: list[Row], target: str, baseline: str, mode: str, kind: str = "rps") -> float | None:
    """Median over rounds of target / baseline, each pair from the same round.

    kind "rps": measured req/s ratio. kind "cpu": baseline CPU µs/req / target CPU µs/req, i.e. the
    req/s ratio if each server had its core to itself (robust when others load the machine).
    """
    by = {(r.round, r.target, r.mode): r for r in rows}
    vals = []
    for rnd in sorted({r.round for r in rows}):
        t, b = by.get((rnd, target, mode)), by.get((rnd, baseline, mode))
        if t is None or b is None:
            continue
        if kind == "rps" and b.rps:
            vals.append(t.rps / b.rps)
        elif kind == "cpu" and t.server_cpu_us and b.server_cpu_us:
            vals.append(b.server_cpu_us / t.server_cpu_us)
    return round(statistics.median(vals), 3) if vals else None


def verdicts(rows: list[Row], med: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets for garrison, each judged on figures from this run only."""
    if not any(r.target == "garrison" for r in rows) or not any(r.target == "haproxy" for r in rows):
        return []
    out: list[dict[str, Any]] = []

    def add(what: str, value: float | None, goal: str, ok: bool | None) -> None:
        result = "n/a" if ok is None else ("PASS" if ok else "MISS")
        out.append({"target": what, "value": value, "goal": goal, "result": result})

    cpu = med.get(("garrison", "repeated"), {}).get("server_cpu_us")
    add("garrison CPU µs/req, repeated token", cpu, f"<= {TARGET_CPU_US_CACHED:g}",
        None if cpu is None else cpu <= TARGET_CPU_US_CACHED)  # fmt: skip
    for mode, goal in (("repeated", TARGET_RATIO_CACHED), ("distinct", TARGET_RATIO_DISTINCT)):
        r = ratio(rows, "garrison", "haproxy", mode)
        add(f"garrison / HAProxy+JWT req/s, {mode}", r, f">= {goal:g}x", None if r is None else r >= goal)
        r = ratio(rows, "garrison", "haproxy", mode, kind="cpu")
        add(f"  same, from CPU µs/req (noise-robust), {mode}", r, f">= {goal:g}x",
            None if r is None else r >= goal)  # fmt: skip
    for mode in MODES:
        p99 = med.get(("garrison", mode), {}).get("p99_ms")
        add(f"garrison p99 ms, {mode}", p99, f"<= {TARGET_P99_MS:g}",
            None if p99 is None else p99 <= TARGET_P99_MS)  # fmt: skip
    return out


def print_report(
    args: argparse.Namespace,
    rows: list[Row],
    med: dict[tuple[str, str], dict[str, Any]],
    checks: list[dict[str, Any]],
) -> None:
    hdr = ("target", "mode", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "threads", "upstream µs/req",
           "x HAProxy+JWT", "(CPU)", "x direct", "core got %", "aux core %", "idle load %",
           "errors")  # fmt: skip
    lines = [hdr]
    for (target, mode), m in med.items():
        lines.append((
            target, mode, fmt(m["rps"], 0), fmt(m["p50_ms"]), fmt(m["p99_ms"]), fmt(m["server_cpu_us"], 1),
            fmt(m["server_other_threads_cpu_us"], 1), fmt(m["upstream_cpu_us"], 1),
            fmt(ratio(rows, target, "haproxy", mode)),
            fmt(ratio(rows, target, "haproxy", mode, kind="cpu")), fmt(ratio(rows, target, "direct", mode)),
            fmt(m["server_core_share_pct"], 0), fmt(m["aux_core_busy_pct"], 0), fmt(m["idle_load_pct"], 0),
            str(m["non2xx"] + m["socket_errors"]),
        ))  # fmt: skip
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(hdr))]
    print()
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s (+{args.warmup:g}s warm-up), "
        f"{args.rounds} round(s), medians; server on cpu {args.server_cpu}, upstream on cpu "
        f"{args.upstream_cpu}, wrk on cpu {args.aux_cpu}; distinct = {args.tokens_distinct:,} tokens"
    )
    for i, line in enumerate(lines):
        cells = (str(c).rjust(widths[j]) if j > 1 else str(c).ljust(widths[j]) for j, c in enumerate(line))
        print("  ".join(cells))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(
        "  threads = the part of CPU µs/req spent outside the server's main thread (log writers etc.).\n"
        "  (CPU) = HAProxy+JWT CPU µs/req / this row's: the req/s ratio if each server had its core alone.\n"
        "  core got % = share of one core the server used; idle load % = both cores' busy % just before\n"
        "  the run while our servers idled (someone else's load: > 10% means a noisy run)."
    )
    if checks:
        print()
        for c in checks:
            v = c["value"]
            shown = fmt(v) if isinstance(v, float) else str(v)
            print(f"  {c['result']:<4}  {c['target']:<52} {shown:>8}  (target {c['goal']})")
    warn = [
        f"{r.target}/{r.mode} round {r.round}: {r.non2xx} non-2xx, {r.socket_errors} socket errors"
        for r in rows
        if r.non2xx or r.socket_errors
    ]
    warn += [
        f"{r.target}/{r.mode} round {r.round}: wrk {r.wrk_cpu_pct:.0f}% + upstream "
        f"{r.upstream_core_share_pct:.0f}% of their shared core (load generator / upstream may be the limit)"
        for r in rows
        if r.upstream_core_share_pct is not None and r.wrk_cpu_pct + r.upstream_core_share_pct > 85
    ]
    noisy = [r.idle_load_pct for r in rows if r.idle_load_pct is not None and r.idle_load_pct > 10]
    if noisy:
        warn.append(
            f"{len(noisy)} of {len(rows)} runs started with others' load on the machine (idle load up to "
            f"{max(noisy):.0f}%): prefer the (CPU) ratios, --rounds 3, or --nice -10 (root)"
        )
    for w in warn:
        print(f"  WARNING {w}")


def run(args: argparse.Namespace) -> int:
    targets = [t.strip() for t in args.only.split(",") if t.strip()]
    bad = sorted(set(targets) - set(ALL_TARGETS))
    if bad:
        raise BenchError(f"unknown target(s) {bad}; choose from {', '.join(ALL_TARGETS)}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if set(modes) - set(MODES):
        raise BenchError(f"unknown mode(s) {sorted(set(modes) - set(MODES))}")
    for tool in ("wrk", "taskset", "curl") + (
        ("haproxy",) if any(t.startswith("haproxy") for t in targets) else ()
    ):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found: run scripts/install-bench-tools.sh")
    if args.duration > 60 or args.warmup > 30:
        raise BenchError("keep load bounded: --duration <= 60, --warmup <= 30")

    run_dir = Path(tempfile.mkdtemp(prefix="garrison-bench-"))
    procs = Processes(run_dir, args.nice)
    ok = False
    try:
        tokens = make_tokens(run_dir, args.tokens_distinct if "distinct" in modes else 1)
        ports = {
            k: free_port()
            for k in ("upstream", "haproxy", "haproxy-probe", "haproxy-plain", "garrison", "garrison-admin")
        }
        ports["direct"] = ports["upstream"]
        if args.upstream == "python":
            up_cmd = [sys.executable, str(UPSTREAM_SCRIPT), "--port", str(ports["upstream"])]
        else:  # HAProxy answering by itself (http-request return)
            cfg = run_dir / "upstream-haproxy.cfg"
            cfg.write_text(
                "global\n    nbthread 1\n    maxconn 4096\ndefaults\n    mode http\n"
                "    timeout client 30s\n    timeout connect 2s\n    timeout server 30s\n"
                f"frontend up\n    bind 127.0.0.1:{ports['upstream']}\n"
                "    http-request return status 200 content-type application/json "
                "string '{\"ok\":true}'\n"
            )
            up_cmd = ["haproxy", "-db", "-f", str(cfg)]
        procs.start("upstream", up_cmd, ports["upstream"], args.upstream_cpu)

        failures: list[str] = []
        if any(t.startswith("haproxy") for t in targets):
            cfg = render_haproxy(run_dir, ports, tokens.public_pem)
            check = subprocess.run(
                ["haproxy", "-c", "-q", "-f", str(cfg)], capture_output=True, text=True, check=False
            )
            if check.returncode != 0:
                raise BenchError(f"haproxy config invalid:\n{check.stdout}{check.stderr}")
            procs.start("haproxy", ["haproxy", "-db", "-f", str(cfg)], ports["haproxy"], args.server_cpu)
            failures += check_enforcement("haproxy", ports["haproxy"], tokens)
            failures += check_haproxy_limiter(ports["haproxy-probe"], tokens.repeated)
        if "garrison" in targets:
            gcfg = render_garrison(run_dir, ports, tokens.public_pem)
            procs.start(
                "garrison",
                [find_garrison(args.garrison_bin), "gateway", "--config", str(gcfg)],
                ports["garrison"],
                args.server_cpu,
                ready_timeout=args.garrison_timeout,
            )
            failures += check_enforcement("garrison", ports["garrison"], tokens)
        if curl_status(ports["upstream"], None) != 200:
            failures.append("upstream: GET / did not return 200")
        if failures:
            raise BenchError(
                "enforcement checks failed (a gateway that does not enforce is not benchmarked):\n  "
                + "\n  ".join(failures)
            )

        wrk = Wrk(args, run_dir, tokens)
        rows: list[Row] = []
        for rnd in range(1, args.rounds + 1):
            for mode in modes:
                for target in targets:  # interleaved: each ratio's two figures are minutes apart at most
                    rows.append(measure(args, procs, wrk, rnd, target, mode, ports[target]))

        extra: dict[str, Any] = {}
        if "garrison" in targets:
            status, body = http_get(ports["garrison-admin"], "/metrics")
            dl = run_dir / "decisions.jsonl"
            n_dec = sum(1 for _ in dl.open()) if dl.exists() else 0
            extra["garrison_admin_metrics"] = {"status": status, "bytes": len(body)}
            extra["garrison_decision_log_lines"] = n_dec
            log(f"garrison admin /metrics: HTTP {status}, {len(body):,} bytes; decision log: {n_dec:,} lines")

        med = median_rows(rows)
        checks = verdicts(rows, med)
        print_report(args, rows, med, checks)
        print("\ncommands:")
        for c in procs.commands + wrk.commands:
            print(f"  {c}")
        if args.json:
            doc = {
                "args": vars(args),
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "host": platform.node(),
                "versions": versions(),
                "rows": [dataclasses.asdict(r) for r in rows],
                "medians": [
                    {
                        "target": t,
                        "mode": m,
                        **v,
                        "ratio_vs_haproxy": ratio(rows, t, "haproxy", m),
                        "ratio_vs_haproxy_cpu": ratio(rows, t, "haproxy", m, kind="cpu"),
                        "ratio_vs_direct": ratio(rows, t, "direct", m),
                    }
                    for (t, m), v in med.items()
                ],
                "targets": checks,
                "commands": procs.commands + wrk.commands,
                **extra,
            }
            Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
            log(f"wrote {args.json}")
        ok = True
    finally:
        procs.stop_all()
        if ok and not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            log(f"kept {run_dir} (logs, configs, tokens)")
    return 0


def versions() -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr).strip() else "?"

    return {
        "haproxy": first_line(["haproxy", "-v"]),
        "wrk": first_line(["wrk", "-v"]),
        "python": sys.version.split()[0],
        "garrison_git": first_line(["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"]),
        "kernel": platform.release(),
        "cpus": str(os.cpu_count()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10, help="measured seconds per run (default 10)")
    ap.add_argument("--warmup", type=float, default=2, help="discarded warm-up seconds per run (default 2)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument(
        "--only", default="haproxy,direct,garrison", help=f"comma list of {','.join(ALL_TARGETS)}"
    )
    ap.add_argument("--modes", default="repeated,distinct", help="comma list of repeated,distinct")
    ap.add_argument(
        "--tokens-distinct",
        type=int,
        default=20_000,
        help="distinct valid tokens for the distinct mode (> garrison's token cache)",
    )
    ap.add_argument("--rounds", type=int, default=1, help="repeat the whole sequence; medians are reported")
    ap.add_argument(
        "--upstream",
        choices=("python", "haproxy"),
        default="python",
        help="bench/upstream.py (default) or HAProxy `http-request return`",
    )
    ap.add_argument("--server-cpu", type=int, default=0, help="core for the server under test")
    ap.add_argument("--aux-cpu", type=int, default=1, help="core for wrk")
    ap.add_argument(
        "--upstream-cpu", type=int, default=None, help="core for the upstream (default: --aux-cpu)"
    )
    ap.add_argument("--garrison-bin", default=None, help="garrison console script (default: beside python)")
    ap.add_argument("--garrison-timeout", type=float, default=30, help="seconds for garrison to answer")
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run servers, upstream and wrk under `nice -n N` (e.g. -10 as root on a shared machine: "
        "they then take their cores from others' jobs; default 0 = off)",
    )
    ap.add_argument(
        "--idle-probe",
        type=float,
        default=0.5,
        help="seconds of idle before each run to measure others' load on the machine",
    )
    ap.add_argument("--json", default=None, help="write all figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, tokens)")
    args = ap.parse_args(argv)
    if args.upstream_cpu is None:
        args.upstream_cpu = args.aux_cpu
    ncpu = os.cpu_count() or 1
    for c in (args.server_cpu, args.aux_cpu, args.upstream_cpu):
        if not 0 <= c < ncpu:
            ap.error(f"cpu {c} does not exist (this machine has {ncpu})")

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    try:
        return run(args)
    except BenchError as e:
        print(f"\nBENCHMARK FAILED: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; every started process was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
