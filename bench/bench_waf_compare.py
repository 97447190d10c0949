"""WAF throughput: garrison's WAF stage on vs off, next to nginx + ModSecurity 3 + the same CRS on vs off.

Four servers in one run, each a reverse proxy in front of the same upstream (bench/upstream.py):
nginx without ModSecurity, nginx with ModSecurity 3 (Debian's libnginx-mod-http-modsecurity) running
CRS 3.3.4 at PL1 in blocking anomaly-scoring mode, garrison with a public route and no WAF, and the
same garrison with the top-level ``waf:`` section (same crs-setup.conf and rules directory, PL1,
blocking, default thresholds, same body limit). Three benign requests, identical bytes for every
server: a GET /search with a query string, a 1 KB form POST, a 4 KB JSON POST.

    python bench/bench_waf_compare.py --duration 8 --connections 50 --threads 1 [--nice -10]

Before any load each "on" server must answer 403 to an SQLi/XSS probe of every request kind (query,
form body, JSON body) and each "off" server 200; every server must answer 200 to the benign requests,
which must score 0 on both WAFs (ModSecurity: a last rule answers 418 to any score; garrison: its
engine, loaded in this process, finds no match). Otherwise the bench refuses to report. Ratios are
what to read (shared, noisy machine): on/off req/s, and the same from CPU per request. CPU µs per
inspected KB = (CPU µs/req on - off) / KB of the whole request as sent.

CPU layout as bench/gateway_bench.py (whose helpers this imports): the server under test alone on
--server-cpu, upstream and wrk on --aux-cpu. Each cell is one wrk run (warm-up + duration + 1 s);
its figures come from the steady-state window after the warm-up, with requests counted by the server
itself (nginx stub_status on a port of its own, garrison's admin /metrics) and CPU = delta of
utime+stime of every process of the server's session (nginx master + worker). See bench/README.md.
Needs nginx, libnginx-mod-http-modsecurity, wrk, curl, taskset (scripts/install-bench-tools.sh) and
the CRS (scripts/install-crs.sh).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway_bench import (
    CLK_TCK,
    UPSTREAM_SCRIPT,
    WRK_REPORT_LUA,
    BenchError,
    Processes,
    apply_nice,
    busy_pct,
    cpu_times,
    find_garrison,
    fmt,
    free_port,
    http_get,
    log,
    parse_wrk,
    session_ticks,
)

CRS_RULES = Path("/usr/share/modsecurity-crs/rules")
CRS_SETUP = Path("/etc/modsecurity/crs/crs-setup.conf")
MODSEC_PKG = "libnginx-mod-http-modsecurity"
BODY_LIMIT = 131_072  # both sides: inspect up to 128 KiB, refuse larger bodies
SIDES = ("nginx", "garrison")
SERVERS = ("nginx-off", "nginx-on", "garrison-off", "garrison-on")
HOST = "shop.example.com"  # a name: CRS 920350 scores a numeric Host, which would add a match
COMMON_HEADERS = (
    ("Host", HOST),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"),
    ("Accept", "application/json, text/html;q=0.9, */*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.7"),
)


# --------------------------------------------------------------------------- the requests


@dataclasses.dataclass(frozen=True)
class Kind:
    """One request kind: the benign request measured and the attack of the same shape probed."""

    name: str
    method: str
    path: str
    content_type: str | None
    body: bytes
    attack_path: str
    attack_body: bytes

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        ct = (("Content-Type", self.content_type),) if self.content_type else ()
        return COMMON_HEADERS + ct

    def wire_headers(self) -> tuple[tuple[str, str], ...]:
        """The headers as sent: wrk and curl add Content-Length to a request with a body."""
        cl = (("Content-Length", str(len(self.body))),) if self.body else ()
        return self.headers + cl

    def wire_bytes(self) -> int:
        """Size of the request wrk sends: request line, headers, blank line, body."""
        lines = [f"{self.method} {self.path} HTTP/1.1", *(f"{k}: {v}" for k, v in self.wire_headers())]
        return len(("\r\n".join(lines) + "\r\n\r\n").encode()) + len(self.body)


def _pad(build: Any, size: int) -> bytes:
    """build(n) -> bytes growing with n; the n whose result is exactly `size` bytes."""
    for n in range(size):
        out: bytes = build(n)
        if len(out) == size:
            return out
    raise BenchError(f"cannot pad a body to {size} bytes")


def form_body() -> bytes:
    """A profile form (application/x-www-form-urlencoded), exactly 1,024 bytes."""
    head = (
        "first_name=Maria&last_name=Garcia&email=maria.garcia%40example.com&phone=%2B1+555+0100"
        "&street=221+Baker+Street&city=Springfield&postcode=12345&country=US&newsletter=yes"
        "&language=en-US&timezone=America%2FChicago&bio="
    )
    words = "Product+designer+in+Springfield+who+enjoys+hiking+cycling+and+photography+on+weekends+"
    return _pad(lambda n: (head + (words * 20)[:n]).encode(), 1024)


def json_body() -> bytes:
    """An order (application/json), exactly 4,096 bytes."""
    names = ("Trail running shoe", "Merino wool socks", "Water bottle 750 ml", "Rain jacket", "Headlamp")
    items = [
        {
            "sku": f"SKU-{10001 + i}",
            "name": names[i % len(names)],
            "qty": 1 + i % 3,
            "unit_price": round(9.5 + 7.25 * i, 2),
            "gift_wrap": i % 4 == 0,
        }
        for i in range(22)
    ]
    doc: dict[str, Any] = {
        "customer": {"id": "C-104233", "email": "maria.garcia@example.com", "loyalty_tier": "silver"},
        "currency": "EUR",
        "items": items,
        "shipping": {
            "method": "standard",
            "street": "221 Baker Street",
            "city": "Springfield",
            "postcode": "12345",
            "country": "US",
        },
        "note": "",
    }
    text = "Please leave the parcel with the neighbour if nobody is at home. Thank you. " * 60

    def build(n: int) -> bytes:
        doc["note"] = text[:n]
        return json.dumps(doc, separators=(",", ":")).encode()

    if len(build(0)) > 4096:
        raise BenchError("the JSON order is over 4 KB before padding")
    return _pad(build, 4096)


def kinds() -> dict[str, Kind]:
    sqli_q = "1%27%20OR%20%271%27%3D%271"  # 1' OR '1'='1
    return {
        "get": Kind(
            "GET query",
            "GET",
            "/search?q=wireless+noise+cancelling+headphones&category=electronics&min_price=50"
            "&max_price=200&sort=rating&page=2",
            None,
            b"",
            f"/search?q={sqli_q}&page=2",
            b"",
        ),
        "form": Kind(
            "1 KB form POST",
            "POST",
            "/account/profile",
            "application/x-www-form-urlencoded",
            form_body(),
            "/account/profile",
            b"first_name=Maria&bio=%3Cscript%3Ealert%28document.cookie%29%3C%2Fscript%3E",
        ),
        "json": Kind(
            "4 KB JSON POST",
            "POST",
            "/api/orders",
            "application/json",
            json_body(),
            "/api/orders",
            b'{"customer":{"id":"1\' OR \'1\'=\'1"},"items":[]}',
        ),
    }


def wrk_lua(kind: Kind, body_file: Path) -> str:
    """A wrk script sending exactly `kind`'s request (wrk adds Content-Length from the body)."""
    lines = [f"wrk.method = {json.dumps(kind.method)}", f"wrk.path = {json.dumps(kind.path)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in kind.headers]
    if kind.body:
        lines.append(f'local f = assert(io.open({json.dumps(str(body_file))}, "rb"))')
        lines.append('wrk.body = f:read("*a")')
        lines.append("f:close()")
    return "\n".join(lines) + "\n" + WRK_REPORT_LUA


# --------------------------------------------------------------------------- configs


def modsec_module() -> Path:
    """The connector's .so, where dpkg says the package put it."""
    out = subprocess.run(["dpkg", "-L", MODSEC_PKG], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.endswith("/ngx_http_modsecurity_module.so"):
            return Path(line)
    raise BenchError(f"{MODSEC_PKG} is not installed: run scripts/install-bench-tools.sh")


def modsec_rules(run_dir: Path, request_only: bool) -> Path:
    """ModSecurity's main rules file: modsecurity.conf-recommended (v3) with the engine On, then the CRS.

    Deviations from -recommended, each to match what garrison's WAF does: SecRuleEngine On (not
    DetectionOnly); body limits 128 KiB, Reject (garrison: max_body_bytes 131072, reject); response
    body access Off and audit log Off (garrison inspects requests only and writes no audit log here).
    ModSecurity still runs the CRS's response-header (phase 3) and logging (phase 5) rules, which garrison
    loads but does not execute; `request_only` includes only the REQUEST-*.conf files (a sensitivity
    check of that extra work, not the default).
    """
    data = run_dir / "modsec-data"
    data.mkdir(mode=0o777, exist_ok=True)
    data.chmod(0o777)  # nginx workers run as nobody
    text = f"""\
SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\\+|/)|text/)xml" \\
     "id:'200000',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" \\
     "id:'200001',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRequestBodyLimit {BODY_LIMIT}
SecRequestBodyNoFilesLimit {BODY_LIMIT}
SecRequestBodyLimitAction Reject
SecRule REQBODY_ERROR "!@eq 0" \\
"id:'200002', phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',\\
logdata:'%{{reqbody_error_msg}}',severity:2"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" \\
"id:'200003',phase:2,t:none,log,deny,status:400,msg:'Multipart request body failed strict validation'"
SecRule MULTIPART_UNMATCHED_BOUNDARY "@eq 1" \\
    "id:'200004',phase:2,t:none,log,deny,msg:'Multipart parser detected a possible unmatched boundary.'"
SecPcreMatchLimit 1000
SecPcreMatchLimitRecursion 1000
SecRule TX:/^MSC_/ "!@streq 0" \\
        "id:'200005',phase:2,t:none,deny,msg:'ModSecurity internal error flagged: %{{MATCHED_VAR_NAME}}'"
SecResponseBodyAccess Off
SecTmpDir {data}
SecDataDir {data}
SecAuditEngine Off
SecArgumentSeparator &
SecCookieFormat 0
Include {CRS_SETUP}
Include {CRS_RULES}/{"REQUEST-" if request_only else ""}*.conf
# The bench's own check, after the CRS: a request that scored at all (even under the threshold) gets
# 418, so "the benign requests answer 200" also proves ModSecurity matched no rule in them. One TX
# comparison per request.
SecRule TX:ANOMALY_SCORE "!@eq 0" "id:1999001,phase:2,deny,status:418,log,msg:'bench: request scored'"
"""
    path = run_dir / "modsec-main.conf"
    path.write_text(text)
    return path


def nginx_conf(
    run_dir: Path, name: str, port: int, status: int, upstream: int, modsec: bool, request_only: bool = False
) -> tuple[Path, Path]:
    """One worker, no access log, keep-alive to the upstream, stub_status on its own port (outside
    ModSecurity) for the request counter; (config, error log)."""
    d = run_dir / name
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    err = d / "error.log"
    load = f"load_module {modsec_module()};\n" if modsec else ""
    waf = (
        f"        modsecurity on;\n        modsecurity_rules_file {modsec_rules(run_dir, request_only)};\n"
        if modsec
        else ""
    )
    text = f"""\
{load}worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {err} notice;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
{waf}        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen 127.0.0.1:{status};
        location / {{ stub_status; }}
    }}
}}
"""
    conf = d / "nginx.conf"
    conf.write_text(text)
    return conf, err


def garrison_conf(run_dir: Path, name: str, port: int, admin: int, upstream: int, waf: bool) -> Path:
    """A public route to the upstream; with `waf`, the top-level waf: section (every route runs it)."""
    config: dict[str, Any] = {
        "listeners": [{"name": "edge", "address": f"127.0.0.1:{port}"}],
        "routes": [
            {
                "name": "app",
                "path": "/**",
                "upstream": f"http://127.0.0.1:{upstream}",
                "methods": ["GET", "POST"],
                "public": True,
            }
        ],
        "telemetry": {"admin": {"address": f"127.0.0.1:{admin}"}},
    }
    if waf:
        config["waf"] = {
            "rules_dir": str(CRS_RULES),
            "crs_setup": str(CRS_SETUP),
            "paranoia_level": 1,
            "inbound_anomaly_threshold": 5,
            "mode": "blocking",
            "max_body_bytes": BODY_LIMIT,
            "body_limit_action": "reject",
        }
    path = run_dir / f"{name}.yaml"
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return path


# --------------------------------------------------------------------------- checks


def curl(
    port: int, method: str, path: str, headers: tuple[tuple[str, str], ...], body: bytes | None, run_dir: Path
) -> int:
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "-X", method]
    for k, v in headers:
        cmd += ["-H", f"{k}: {v}"]
    if body:
        f = run_dir / "probe-body.bin"
        f.write_bytes(body)
        cmd += ["--data-binary", f"@{f}"]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=False
    )
    return int(out.stdout or 0)


def check_inspection(ports: dict[str, int], servers: list[str], ks: dict[str, Kind], run_dir: Path) -> None:
    """Every "on" server blocks each attack (403), every "off" one passes it; all pass the benign ones."""
    failures = []
    for key, k in ks.items():
        got = []
        for s in servers:
            benign = curl(ports[s], k.method, k.path, k.headers, k.body, run_dir)
            attack = curl(ports[s], k.method, k.attack_path, k.headers, k.attack_body, run_dir)
            want = 403 if s.endswith("-on") else 200
            got.append(f"{s} benign={benign} attack={attack}")
            if benign != 200:
                failures.append(f"{s}: benign {key} request got {benign}, expected 200")
            if attack != want:
                failures.append(f"{s}: {key} attack probe got {attack}, expected {want}")
        log(f"inspection check {key}: " + ", ".join(got))
    if failures:
        raise BenchError("inspection checks failed (nothing is reported):\n  " + "\n  ".join(failures))


def check_benign_in_engine(ks: dict[str, Kind]) -> int:
    """garrison's engine, loaded here with the bench's settings, matches no rule in the benign requests
    (a scored-but-passed request would be logged work that is not the WAF's usual path). Rules loaded."""
    from garrison.waf import WafEngine, WafRequest

    engine = WafEngine.load([CRS_SETUP, CRS_RULES], paranoia_level=1, inbound_threshold=5)
    for key, k in ks.items():
        res = engine.inspect(WafRequest(k.method, k.path, headers=k.wire_headers(), body=k.body))
        if res.matches:
            ids = sorted(res.matched_ids)
            raise BenchError(f"the benign {key} request matches CRS rules {ids}: change the payload")
    return len(engine.ruleset.rules)


def modsec_warnings(err_logs: list[Path]) -> tuple[int, str]:
    """(ModSecurity rule matches logged, the connector's 'rules loaded' line) from nginx error logs."""
    warnings, loaded = 0, ""
    for p in err_logs:
        text = p.read_text(errors="replace") if p.exists() else ""
        warnings += text.count("ModSecurity: Warning") + text.count("ModSecurity: Access denied")
        m = re.search(r"ModSecurity-nginx v[\d.]+ \([^)]*\)|rules loaded inline/local/remote: [\d/]+", text)
        loaded = m.group(0) if m else loaded
    return warnings, loaded


# --------------------------------------------------------------------------- load


@dataclasses.dataclass
class Cell:
    round: int
    kind: str
    server: str
    rps: float  # requests the server counted in the window / window seconds
    requests: int
    cpu_us: float | None
    p99_ms: float  # wrk's, over the whole run (warm-up included)
    errors: int  # non-2xx + socket errors over the whole wrk run
    core_got_pct: float | None
    aux_core_pct: float | None
    idle_load_pct: float | None
    wrk_cpu_pct: float


@dataclasses.dataclass(frozen=True)
class Counter:
    """Where a server says how many requests it has handled: nginx stub_status or garrison /metrics."""

    kind: str  # "nginx" | "garrison"
    port: int

    def read(self) -> int:
        status, body = http_get(self.port, "/" if self.kind == "nginx" else "/metrics", timeout=10)
        text = body.decode(errors="replace")
        if status != 200:
            raise BenchError(f"request counter on :{self.port} answered {status}")
        if self.kind == "nginx":  # "server accepts handled requests\n 16 16 31"
            m = re.search(r"requests\s*\n\s*\d+\s+\d+\s+(\d+)", text)
            if not m:
                raise BenchError(f"cannot read nginx stub_status: {text[:200]!r}")
            return int(m.group(1)) - 1  # without this status request itself
        total = [float(v) for v in re.findall(r"^garrison_requests_total\{[^}]*\} (\S+)$", text, re.M)]
        if not total:
            raise BenchError("garrison /metrics has no garrison_requests_total")
        return int(sum(total))


@dataclasses.dataclass(frozen=True)
class Snap:
    t: float
    ticks: int
    served: int
    cpus: dict[int, tuple[int, int]]


def snap(pid: int, counter: Counter) -> Snap:
    """Counter first, then CPU, at once: a busy server may answer the counter request only after the
    requests queued before it (up to --connections x the WAF's time), and the count is as of then."""
    served = counter.read()
    t = time.monotonic()
    return Snap(t, session_ticks(pid), served, cpu_times())


def wait_idle(pids: list[int], timeout: float = 60) -> None:
    """Until our servers stop working (a slow proxy finishes the requests wrk abandoned)."""
    deadline = time.monotonic() + timeout
    before = sum(session_ticks(p) for p in pids)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(session_ticks(p) for p in pids)
        if now - before <= 1:
            return
        before = now
    log("WARNING our servers were still busy after the previous run")


def wrk_argv(args: argparse.Namespace, port: int, lua: Path, duration: float) -> list[str]:
    return (["nice", "-n", str(args.nice)] if args.nice else []) + [
        "taskset",
        "-c",
        str(args.aux_cpu),
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration:g}s",
        "--latency",
        "--timeout",
        "30s",  # a saturated WAF at 50 connections answers some requests only after seconds
        "-s",
        str(lua),
        f"http://127.0.0.1:{port}",
    ]


def finish_wrk(proc: subprocess.Popen[bytes], out: Any, t0: float, deadline: float) -> tuple[str, float]:
    """Wait for wrk; its output and its CPU % of one core."""
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            raise BenchError("wrk did not finish")
        time.sleep(0.05)
    out.seek(0)
    text: str = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {text}")
    return text, round(100.0 * (ru.ru_utime + ru.ru_stime) / (time.monotonic() - t0), 1)


def measure(
    args: argparse.Namespace, procs: Processes, counter: Counter, rnd: int, key: str, server: str, lua: Path
) -> Cell:
    """One wrk run of warm-up + duration + 1 s; the figures come from the steady-state window between
    the warm-up and the end of duration, counted by the server itself (so requests in flight when wrk
    starts or stops, which a slow WAF may take seconds to finish, are not charged to the window)."""
    srv = procs.servers[server]
    wait_idle([s.pid for s in procs.servers.values()])
    i0 = cpu_times()
    time.sleep(args.idle_probe)
    i1 = cpu_times()
    total = args.warmup + args.duration + 1
    argv = wrk_argv(args, srv.port, lua, total)
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            apply_nice(proc.pid, args.nice)
            time.sleep(max(0.0, t0 + args.warmup - time.monotonic()))
            a = snap(srv.pid, counter)
            time.sleep(max(0.0, a.t + args.duration - time.monotonic()))
            b = snap(srv.pid, counter)
            text, wrk_cpu = finish_wrk(proc, out, t0, t0 + total + 30)
        except BaseException:  # never leave wrk loading a port
            if proc.returncode is None:
                proc.kill()
                proc.wait()
            raise
    w = parse_wrk(text)
    n, secs, ticks = b.served - a.served, b.t - a.t, b.ticks - a.ticks
    cell = Cell(
        round=rnd,
        kind=key,
        server=server,
        rps=round(n / secs, 1),
        requests=n,
        cpu_us=round(ticks / CLK_TCK * 1e6 / n, 1) if n > 0 else None,
        p99_ms=w["lat_p99_us"] / 1000,
        errors=int(w["err_status"])
        + sum(int(w[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout")),
        core_got_pct=round(100.0 * ticks / CLK_TCK / secs, 1),
        aux_core_pct=busy_pct(a.cpus, b.cpus, args.aux_cpu),
        idle_load_pct=busy_pct(i0, i1, -1),
        wrk_cpu_pct=wrk_cpu,
    )
    log(
        f"r{rnd} {key:<4} {server:<12} {cell.rps:>9,.0f} req/s  CPU {fmt(cell.cpu_us, 1)} µs/req"
        f"  ({n} requests)  p99 {cell.p99_ms:.1f} ms  errors {cell.errors}  server got"
        f" {fmt(cell.core_got_pct, 0)}% of its core, aux core {fmt(cell.aux_core_pct, 0)}%,"
        f" wrk {wrk_cpu:.0f}%, idle load {fmt(cell.idle_load_pct, 0)}%"
    )
    if n < 200:
        log(f"WARNING only {n} requests in the window: lengthen --duration for a steadier figure")
    return cell


# --------------------------------------------------------------------------- report


def med(cells: list[Cell], key: str, server: str, field: str) -> float | None:
    vals = [getattr(c, field) for c in cells if c.kind == key and c.server == server]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def pair_ratio(cells: list[Cell], key: str, side: str, field: str) -> float | None:
    """Median over rounds of on/off (rps) or off/on (cpu_us: the req/s ratio from CPU cost alone)."""
    by = {(c.round, c.server): c for c in cells if c.kind == key}
    vals = []
    for rnd in sorted({c.round for c in cells}):
        on, off = by.get((rnd, f"{side}-on")), by.get((rnd, f"{side}-off"))
        if on is None or off is None:
            continue
        a, b = (on.rps, off.rps) if field == "rps" else (off.cpu_us, on.cpu_us)
        if a and b:
            vals.append(a / b)
    return round(statistics.median(vals), 3) if vals else None


def summary(cells: list[Cell], ks: dict[str, Kind], sides: list[str]) -> list[dict[str, Any]]:
    rows = []
    for key, k in ks.items():
        kb = k.wire_bytes() / 1024
        for side in sides:
            on_cpu, off_cpu = (
                med(cells, key, f"{side}-on", "cpu_us"),
                med(cells, key, f"{side}-off", "cpu_us"),
            )
            rows.append(
                {
                    "kind": k.name,
                    "key": key,
                    "side": side,
                    "request_bytes": k.wire_bytes(),
                    "off_rps": med(cells, key, f"{side}-off", "rps"),
                    "on_rps": med(cells, key, f"{side}-on", "rps"),
                    "ratio": pair_ratio(cells, key, side, "rps"),
                    "ratio_cpu": pair_ratio(cells, key, side, "cpu_us"),
                    "off_cpu_us": off_cpu,
                    "on_cpu_us": on_cpu,
                    "waf_us": round(on_cpu - off_cpu, 1)
                    if on_cpu is not None and off_cpu is not None
                    else None,
                    "us_per_kb": round((on_cpu - off_cpu) / kb, 1)
                    if on_cpu is not None and off_cpu is not None
                    else None,
                    "errors": sum(c.errors for c in cells if c.kind == key and c.server.startswith(side)),
                }
            )
    return rows


def print_table(args: argparse.Namespace, rows: list[dict[str, Any]], cells: list[Cell]) -> None:
    label = {"nginx": "nginx + ModSecurity 3", "garrison": "garrison"}
    hdr = (
        "request",
        "server",
        "bytes",
        "off req/s",
        "on req/s",
        "on/off",
        "(CPU)",
        "off µs/req",
        "on µs/req",
        "WAF µs/req",
        "WAF µs/KB",
        "errors",
    )
    lines = [hdr] + [
        (
            r["kind"],
            label[r["side"]],
            str(r["request_bytes"]),
            fmt(r["off_rps"], 0),
            fmt(r["on_rps"], 0),
            fmt(r["ratio"], 3),
            fmt(r["ratio_cpu"], 3),
            fmt(r["off_cpu_us"], 1),
            fmt(r["on_cpu_us"], 1),
            fmt(r["waf_us"], 1),
            fmt(r["us_per_kb"], 1),
            str(r["errors"]),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(hdr))]
    print(
        f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration:g}s (+{args.warmup:g}s warm-up), "
        f"{args.rounds} round(s), medians; proxy on cpu {args.server_cpu},"
        f" upstream + wrk on cpu {args.aux_cpu}"
    )
    for i, line in enumerate(lines):
        print(
            "| "
            + " | ".join(c.ljust(widths[j]) if j < 2 else c.rjust(widths[j]) for j, c in enumerate(line))
            + " |"
        )
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print(
        "  on/off = WAF-on req/s / WAF-off req/s (same round); (CPU) = off CPU µs/req / on CPU µs/req,\n"
        "  the same ratio if the proxy had its core alone. WAF µs/req = on - off CPU µs/req; WAF µs/KB =\n"
        "  that / request KB (request line + headers + body, as sent). CPU = the proxy's process(es) only\n"
        "  (nginx: master + worker), not the upstream's."
    )
    print()
    for key in dict.fromkeys(r["key"] for r in rows):
        g = next((r for r in rows if r["key"] == key and r["side"] == "garrison"), None)
        n = next((r for r in rows if r["key"] == key and r["side"] == "nginx"), None)
        if g is None or n is None:
            continue
        for what, f in (("req/s", "ratio"), ("CPU", "ratio_cpu")):
            if g[f] is None or n[f] is None:
                continue
            verdict = "PASS" if g[f] > n[f] else "MISS"
            print(
                f"  {verdict}  {g['kind']:<15} on/off from {what:<5}: garrison {g[f]:.3f} vs "
                f"ModSecurity {n[f]:.3f} (target: garrison's better)"
            )
    warn = [f"{c.kind}/{c.server} round {c.round}: {c.errors} errors" for c in cells if c.errors]
    warn += [
        f"{c.kind}/{c.server} round {c.round}: upstream+wrk core {c.aux_core_pct:.0f}% busy (may limit req/s;"
        " trust (CPU))"
        for c in cells
        if c.aux_core_pct is not None and c.aux_core_pct > 85
    ]
    noisy = [c.idle_load_pct for c in cells if c.idle_load_pct is not None and c.idle_load_pct > 10]
    if noisy:
        warn.append(
            f"{len(noisy)} of {len(cells)} runs began with others' load (up to {max(noisy):.0f}%):"
            " read the (CPU) ratios"
        )
    for w in warn:
        print(f"  WARNING {w}")


# --------------------------------------------------------------------------- the run


def versions() -> dict[str, str]:
    def out(cmd: list[str]) -> str:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr).strip() else "?"

    return {
        "nginx": out(["nginx", "-v"]),
        "libmodsecurity3": out(["dpkg-query", "-W", "-f", "${Version}", "libmodsecurity3"]),
        MODSEC_PKG: out(["dpkg-query", "-W", "-f", "${Version}", MODSEC_PKG]),
        "modsecurity-crs": out(["dpkg-query", "-W", "-f", "${Version}", "modsecurity-crs"]),
        "wrk": out(["wrk", "-v"]),
        "garrison_git": out(
            ["git", "-C", str(Path(__file__).resolve().parent.parent), "describe", "--always", "--dirty"]
        ),
        "python": sys.version.split()[0],
    }


def start_servers(
    args: argparse.Namespace, procs: Processes, servers: list[str], ports: dict[str, int], run_dir: Path
) -> tuple[dict[str, Counter], list[Path]]:
    """Start every proxy (pinned to the server core); their request counters and the nginx error logs."""
    err_logs, counters = [], {}
    for s in servers:
        counters[s] = Counter(s.split("-")[0], free_port())
        if s.startswith("nginx"):
            conf, err = nginx_conf(
                run_dir,
                s,
                ports[s],
                counters[s].port,
                ports["upstream"],
                modsec=s.endswith("-on"),
                request_only=args.modsec_request_only,
            )
            check = subprocess.run(
                ["nginx", "-t", "-q", "-e", str(err), "-c", str(conf)],
                capture_output=True,
                text=True,
                check=False,
            )
            if check.returncode != 0:
                raise BenchError(f"nginx config {conf} invalid:\n{check.stderr}")
            procs.start(s, ["nginx", "-e", str(err), "-c", str(conf)], ports[s], args.server_cpu)
            err_logs.append(err)
        else:
            cfg = garrison_conf(
                run_dir, s, ports[s], counters[s].port, ports["upstream"], waf=s.endswith("-on")
            )
            procs.start(
                s,
                [find_garrison(args.garrison_bin), "gateway", "--config", str(cfg)],
                ports[s],
                args.server_cpu,
                ready_timeout=args.garrison_timeout,
            )
        counters[s].read()  # fails now, not mid-run, if the counter cannot be read
    return counters, err_logs


def run(args: argparse.Namespace) -> int:
    sides = [s.strip() for s in args.only.split(",") if s.strip()]
    ks_all = kinds()
    keys = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if set(sides) - set(SIDES) or not sides:
        raise BenchError(f"--only: choose from {','.join(SIDES)}")
    if set(keys) - set(ks_all) or not keys:
        raise BenchError(f"--kinds: choose from {','.join(ks_all)}")
    ks = {k: ks_all[k] for k in keys}
    for tool in ("wrk", "taskset", "curl", "nginx"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found: run scripts/install-bench-tools.sh")
    if not CRS_RULES.is_dir() or not CRS_SETUP.is_file():
        raise BenchError(f"no CRS in {CRS_RULES} / {CRS_SETUP}: run scripts/install-crs.sh")
    if args.duration > 60 or args.warmup > 30:
        raise BenchError("keep load bounded: --duration <= 60, --warmup <= 30")
    servers = [s for s in SERVERS if s.split("-")[0] in sides]

    t0 = time.monotonic()
    n_rules = check_benign_in_engine(ks)
    log(
        f"garrison's engine: {n_rules} CRS rules loaded in {time.monotonic() - t0:.1f} s; the benign"
        " requests match none"
    )
    run_dir = Path(tempfile.mkdtemp(prefix="garrison-wafbench-"))
    run_dir.chmod(0o755)  # nginx workers (nobody) reach their temp dirs; nothing secret in here
    procs = Processes(run_dir, args.nice)
    ok = False
    try:
        ports = {s: free_port() for s in ("upstream", *servers)}
        up_cmd = [sys.executable, str(UPSTREAM_SCRIPT), "--port", str(ports["upstream"])]
        procs.start("upstream", up_cmd, ports["upstream"], args.aux_cpu)
        counters, err_logs = start_servers(args, procs, servers, ports, run_dir)
        check_inspection(ports, servers, ks, run_dir)
        if "garrison-on" in procs.servers:
            text = procs.servers["garrison-on"].log_path.read_text(errors="replace")
            for line in re.findall(r"waf: (loaded .*|\d+ rule constructs are not supported.*)", text):
                log(f"garrison-on: {line} (listed in its log)")
        n_probe_hits, loaded = modsec_warnings(err_logs)
        if "nginx" in sides:
            log(
                f"ModSecurity: {loaded or 'rules-loaded line not found'}; {n_probe_hits} rule matches logged"
                " by the probes"
            )
        luas = {}
        for key, k in ks.items():
            body = run_dir / f"body-{key}.bin"
            body.write_bytes(k.body)
            luas[key] = run_dir / f"wrk-{key}.lua"
            luas[key].write_text(wrk_lua(k, body))
            log(f"{key}: {k.method} {k.path[:60]} body {len(k.body)} B, request {k.wire_bytes()} B")
        cells = [
            measure(args, procs, counters[s], rnd, key, s, luas[key])
            for rnd in range(1, args.rounds + 1)
            for key in ks
            for s in servers  # interleaved: each on/off pair is seconds apart
        ]
        after, _ = modsec_warnings(err_logs)
        if after != n_probe_hits:
            log(f"WARNING ModSecurity logged {after - n_probe_hits} rule matches during the benign load")
        rows = summary(cells, ks, sides)
        print_table(args, rows, cells)
        print("\nversions: " + "; ".join(f"{k} {v}" for k, v in versions().items()))
        print("commands:")
        for c in procs.commands:
            print(f"  {c}")
        total = args.warmup + args.duration + 1
        print(f"  {' '.join(wrk_argv(args, 0, run_dir / 'wrk-KIND.lua', total))}  # per server port")
        if args.json:
            doc = {
                "args": vars(args),
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "versions": versions(),
                "rows": rows,
                "cells": [dataclasses.asdict(c) for c in cells],
            }
            Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
            log(f"wrote {args.json}")
        ok = True
    finally:
        procs.stop_all()
        if ok and not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            log(f"kept {run_dir} (configs, logs, bodies, wrk scripts)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=8, help="measured seconds per cell (default 8)")
    ap.add_argument("--warmup", type=float, default=2, help="discarded warm-up seconds per cell (default 2)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--only", default="nginx,garrison", help="comma list of nginx,garrison")
    ap.add_argument("--kinds", default="get,form,json", help="comma list of get,form,json")
    ap.add_argument(
        "--modsec-request-only",
        action="store_true",
        help="ModSecurity loads only the CRS REQUEST-*.conf files (sensitivity check; default: all, as"
        " deployed)",
    )
    ap.add_argument("--rounds", type=int, default=1, help="repeat everything; medians are reported")
    ap.add_argument("--server-cpu", type=int, default=0, help="core for the proxy under test")
    ap.add_argument("--aux-cpu", type=int, default=1, help="core for the upstream and wrk")
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run servers, upstream and wrk under nice -n N and its autogroup (root; e.g. -10)",
    )
    ap.add_argument(
        "--idle-probe", type=float, default=0.5, help="idle seconds before each cell (others' load)"
    )
    ap.add_argument("--garrison-bin", default=None, help="garrison console script (default: beside python)")
    ap.add_argument("--garrison-timeout", type=float, default=60, help="seconds for garrison to answer")
    ap.add_argument("--json", default=None, help="write all figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    args = ap.parse_args(argv)
    ncpu = os.cpu_count() or 1
    for c in (args.server_cpu, args.aux_cpu):
        if not 0 <= c < ncpu:
            ap.error(f"cpu {c} does not exist (this machine has {ncpu})")

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
