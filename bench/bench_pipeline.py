"""Sans-IO microbenchmark of the request path: the pre chain + the route chain, no sockets.

    .venv/bin/python bench/bench_pipeline.py [--n 20000] [--repeat 5] [--distinct 0]

Builds a Runtime from the same config as ``bench/gateway_bench.py`` (one ES256 issuer with a static
key, route ``/**``, an issuer policy, a per-subject rate limit, a decision log to a temp file) and
runs, per request: a fresh ``RequestContext`` (as the server builds it), ``rt.pre.run(ctx)`` and
``route.chain.run(ctx)``, driven the way the event loop drives a task (``coro.send(None)``).

Printed, in µs per request (CPU time of the benchmark thread, ``time.thread_time``: other load on
the machine inflates it far less than wall time; the decision-log writer thread is not counted):

- ``baseline``: a context plus an empty chain, measured in the same run;
- one line per stage, as the difference between running the chain up to and including that stage
  and up to the one before it (so each line is what that stage adds);
- ``pre + route``: both chains, as the server runs them;
- ``observe``: the gateway's per-request telemetry (metrics + decision record);
- ``head bytes``: building the upstream request head, the client response head (response hooks
  included) and rendering it;
- ``sans-IO total``: all of the above, i.e. the request path minus the socket work;
- ``server round trip``: ``HttpConnection`` and ``UpstreamConnection`` fed raw bytes through fake
  transports (parsers, callbacks, pipeline, heads, telemetry: everything but the syscalls).

``--distinct N`` rotates through N distinct tokens (N above the verified-token cache size, 10,000,
defeats the cache, like the gateway benchmark's distinct mode); 0 repeats one token.
Best (minimum) of ``--repeat`` runs, median in brackets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from garrison.config.loader import parse_config
from garrison.identity.authenticator import JwtAuthenticator
from garrison.pipeline.chain import Chain
from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import ResponseHead
from garrison.pipeline.verdicts import CONTINUE
from garrison.proxy.build import build_runtimes
from garrison.proxy.forward import NO_BODY, build_upstream_head, response_headers_for_client
from garrison.proxy.gateway import Gateway
from garrison.proxy.responses import render_head

with contextlib.suppress(ImportError):  # an older tree has none: headers as a list, then rendered
    from garrison.proxy.forward import client_response_head  # noqa: F401  (looked up in head_bytes)
from garrison.proxy.upstream import Pools
from garrison.telemetry.decisions import DecisionLog
from garrison.telemetry.metrics import GatewayMetrics

ISSUER = "https://bench.local"
AUDIENCE = "bench-api"
KID = "k1"
HOST = b"127.0.0.1:18081"
UPSTREAM_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"11")]

try:  # the server's own (optional) id helper; otherwise a stand-in of the same shape
    from garrison.proxy.server import _new_request_id as new_request_id
except ImportError:  # pragma: no cover
    import itertools

    _c = itertools.count(1)

    def new_request_id() -> str:
        return f"abcdefabcdef{next(_c):010x}"


def run_chain(chain: Chain, ctx: RequestContext) -> Any:
    """``chain.run_fast`` when the chain has it (no coroutine), else its coroutine driven in place."""
    fast = getattr(chain, "run_fast", None)
    if fast is not None:
        v = fast(ctx)
        if type(v).__name__ == "Pending":
            raise RuntimeError("a stage suspended: this benchmark runs only non-blocking paths")
        return v
    return drive(chain.run(ctx))


def stage_call(stage: Any) -> Callable[[RequestContext], Any]:
    """The stage's synchronous ``check`` when it has one, else its coroutine driven in place."""
    if getattr(stage, "sync", False):
        return stage.check  # type: ignore[no-any-return]
    run = stage.on_request
    return lambda ctx: drive(run(ctx))


def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends, as a Task step would (one send)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("the coroutine suspended: this benchmark runs only non-blocking paths")


def make_tokens(tmp: Path, n: int) -> tuple[Path, list[bytes]]:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pub = tmp / "pub.pem"
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
    many = (dict(base, sub=f"bench-client-{i}", jti=f"j{i}") for i in range(n))
    claims = [base] if n <= 1 else list(many)
    return pub, [jwt.encode(c, key, algorithm="ES256", headers={"kid": KID}).encode() for c in claims]


def config_text(pub: Path, tmp: Path) -> str:
    return f"""
trust_domain: bench.local
listeners: [{{name: edge, address: "127.0.0.1:18081"}}]
issuers:
  - {{name: bench, issuer: "{ISSUER}", audiences: [{AUDIENCE}], algorithms: [ES256],
     keys: [{{kid: {KID}, pem_file: "{pub}"}}]}}
routes:
  - {{name: api, path: "/**", upstream: "http://127.0.0.1:18080", methods: [GET]}}
policies:
  - {{name: bench-clients, routes: [api], from: {{issuers: [bench]}}}}
rate_limits:
  - {{name: per-subject, key: [subject], rate: 1000000, burst: 1000000}}
telemetry:
  decision_log: {{path: "{tmp / "decisions.jsonl"}"}}
"""


class Bench:
    def __init__(self, n: int, distinct: int) -> None:
        self.n = n
        self.tmp = Path(tempfile.mkdtemp(prefix="garrison-bench-pipeline-"))
        pub, self.tokens = make_tokens(self.tmp, distinct)
        cfg = parse_config(config_text(pub, self.tmp))
        self.authn = JwtAuthenticator.build(cfg.issuers, cfg.trust_domain)
        asyncio.run(self.authn.start())
        metrics = GatewayMetrics(process_metrics=False)
        self.decisions = DecisionLog.from_config(cfg.telemetry.decision_log)
        self.gw = SimpleNamespace(metrics=metrics, decisions=self.decisions)
        self.rt = build_runtimes(cfg, pools=Pools(), observe=self.observe, authenticators=(self.authn,))[
            "edge"
        ]
        self.route = self.rt.router.routes[0]
        self.turn = 0
        self.headers = [[(b"host", HOST), (b"authorization", b"Bearer " + t)] for t in self.tokens]
        self.stages = (*self.rt.pre.stages, *self.route.chain.stages)  # type: ignore[union-attr]

    def observe(self, ctx: RequestContext, status: int, duration: float) -> None:
        Gateway.observe(self.gw, ctx, status, duration)  # type: ignore[arg-type]

    def ctx(self, i: int) -> RequestContext:
        # Tokens rotate across calls (not per run), so a distinct mode stays distinct from run to run.
        self.turn = (self.turn + 1) % len(self.headers)
        ctx = RequestContext(
            method="GET",
            raw_target=b"/api/items?id=1",
            headers=list(self.headers[self.turn]),
            client_addr="127.0.0.1",
            request_id=new_request_id(),
            now=time.time(),
        )
        ctx.http_version = "1.1"
        return ctx

    # -- what one request does ---------------------------------------------------------------
    def run_chain(self, chain: Chain) -> Callable[[int], None]:
        def one(i: int) -> None:
            run_chain(chain, self.ctx(i))

        return one

    def pre_route(self, i: int) -> RequestContext:
        ctx = self.ctx(i)
        v = run_chain(self.rt.pre, ctx)
        assert v is CONTINUE and ctx.route is not None, v
        v = run_chain(ctx.route.chain, ctx)  # type: ignore[arg-type]
        assert v is CONTINUE, v
        return ctx

    def head_bytes(self, ctx: RequestContext) -> None:
        build_upstream_head(ctx, self.route, ctx.framing or NO_BODY)
        head = ResponseHead(200, list(UPSTREAM_HEADERS))
        self.route.chain.on_response(ctx, head)  # type: ignore[union-attr]
        render = globals().get("client_response_head")  # absent from an older tree
        if render is not None:
            render(ctx, head, True, False, False)
        else:
            headers, _, _ = response_headers_for_client(ctx, head, True, False, False)
            render_head(head.status, headers)

    def total(self, i: int) -> None:
        started = time.perf_counter()
        ctx = self.pre_route(i)
        self.head_bytes(ctx)
        self.rt.observe(ctx, 200, time.perf_counter() - started)

    # -- timing ------------------------------------------------------------------------------
    def time_stage(self, k: int, repeat: int) -> tuple[float, float]:
        """One stage's ``on_request`` alone, on contexts the stages before it prepared (untimed)."""
        before = Chain("before", self.stages[:k])
        stage = self.stages[k]
        n = self.n
        runs = []
        for _ in range(repeat):
            ctxs = [self.ctx(i) for i in range(n)]
            for ctx in ctxs:
                run_chain(before, ctx)
            run = stage_call(stage)
            t0 = time.thread_time()
            for ctx in ctxs:
                run(ctx)
            runs.append((time.thread_time() - t0) / n * 1e6)
        return min(runs), statistics.median(runs)

    def time(self, fn: Callable[[int], object], repeat: int) -> tuple[float, float]:
        n = self.n
        runs = []
        for _ in range(repeat):
            t0 = time.thread_time()
            for i in range(n):
                fn(i)
            runs.append((time.thread_time() - t0) / n * 1e6)
            self.decisions.flush()
        return min(runs), statistics.median(runs)


class FakeTransport:
    """Stands in for a socket transport: keeps the last write."""

    def __init__(self) -> None:
        self.last = b""
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.last = data
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        raise RuntimeError("the benchmark connection was closed")


UPSTREAM_RESPONSE = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
)


def time_server(b: Bench, repeat: int) -> tuple[float, float] | None:
    """The whole server path with fake transports: client bytes in -> upstream bytes out, upstream
    response in -> client bytes out (parsers, pipeline, head building, telemetry; no syscalls)."""
    try:
        from garrison.proxy.server import HttpConnection
        from garrison.proxy.upstream import UpstreamConnection
    except ImportError:  # pragma: no cover
        return None
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    requests = [
        b"GET /api/items?id=1 HTTP/1.1\r\nHost: 127.0.0.1:18081\r\nAuthorization: Bearer " + t + b"\r\n\r\n"
        for t in b.tokens
    ]

    async def run() -> tuple[float, float] | None:
        server = SimpleNamespace(runtime=b.rt, loop=loop, connections=set(), draining=False)
        client = HttpConnection(server)  # type: ignore[arg-type]
        ct = FakeTransport()
        client.connection_made(ct)  # type: ignore[arg-type]
        pool = b.rt.pools.get(b.route.upstream)
        up = UpstreamConnection(pool)
        ut = FakeTransport()
        up.connection_made(ut)  # type: ignore[arg-type]
        pool._idle.append(up)
        pool._all.add(up)
        n = b.n
        nreq = len(requests)

        turn = [0]

        def one(i: int) -> None:
            turn[0] = k = (turn[0] + 1) % nreq
            client.data_received(requests[k])
            if ut.writes == 0:  # the task path (no callback path in this version): let it run
                raise RuntimeError("no upstream write: this server version has no callback path")
            ut.writes = 0
            up.data_received(UPSTREAM_RESPONSE)

        one(0)
        if not ct.last.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected response {ct.last[:80]!r}")
        runs = []
        for _ in range(repeat):
            t0 = time.thread_time()
            for i in range(n):
                one(i)
            runs.append((time.thread_time() - t0) / n * 1e6)
            b.decisions.flush()
        return min(runs), statistics.median(runs)

    try:
        return loop.run_until_complete(run())
    except RuntimeError as exc:
        print(f"  (server round trip not measured: {exc})")
        return None
    finally:
        loop.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="requests per run")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--distinct", type=int, default=0, help="distinct tokens (0: one repeated token)")
    args = ap.parse_args(argv)

    b = Bench(args.n, args.distinct)
    rows: list[tuple[str, tuple[float, float]]] = []
    for i in range(min(2000, args.n)):  # warm caches (token cache, host cache, buckets)
        b.total(i)
    base = b.time(b.run_chain(Chain("empty", ())), args.repeat)
    rows.append(("baseline (ctx + empty chain)", base))
    for k, stage in enumerate(b.stages):
        rows.append((f"  {stage.name} ({type(stage).__name__}) alone", b.time_stage(k, args.repeat)))
    rows.append(("pre + route (as the server runs them)", b.time(b.pre_route, args.repeat)))

    def obs(i: int) -> None:
        b.rt.observe(ctx, 200, 0.0003)

    ctx = b.pre_route(0)
    rows.append(("observe (metrics + decision record)", b.time(obs, args.repeat)))

    def hb(i: int) -> None:
        b.head_bytes(ctx)

    rows.append(("head bytes (upstream head + client head)", b.time(hb, args.repeat)))
    rows.append(("sans-IO total", b.time(b.total, args.repeat)))
    server = time_server(b, args.repeat)
    if server is not None:
        rows.append(("server round trip (fake transports)", server))

    mode = f"{args.distinct} distinct tokens" if args.distinct else "one repeated token"
    print(f"bench_pipeline: {args.n} requests x {args.repeat} runs, {mode}")
    print("  µs/request (CPU time of the benchmark thread), min [median]")
    for name, (best, med) in rows:
        print(f"  {name:<44} {best:8.2f}  [{med:8.2f}]")
    pr = dict(rows)["pre + route (as the server runs them)"]
    print(f"  {'pre + route minus baseline':<44} {pr[0] - base[0]:8.2f}  [{pr[1] - base[1]:8.2f}]")
    b.decisions.close()
    asyncio.run(b.authn.close())
    return 0


if __name__ == "__main__":
    sys.exit(main())
