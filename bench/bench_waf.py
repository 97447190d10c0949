"""WAF cost per request: benign GET with query, 1 KB form POST, 4 KB JSON POST; CRS 3.3 at PL1.

    .venv/bin/python bench/bench_waf.py [--n 2000]

Prints the median µs per request and per KB with the hyperscan prefilter on and off, and the ratio against a
no-WAF baseline measured in the same run (building the request value only), and the load time of
each engine (hyperscan databases come from the on-disk cache when warm; GARRISON_WAF_CACHE= for cold).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from garrison.waf import WafEngine, WafRequest

H = (("Host", "api.example"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)"), ("Accept", "*/*"))


def requests() -> dict[str, Callable[[], WafRequest]]:
    form = "&".join(f"field{i}=value+number+{i}+with+some+text" for i in range(30)).encode()[:1024]
    doc = {"items": [{"sku": f"SKU-{i}", "qty": i, "note": "standard delivery please"} for i in range(60)]}
    body = json.dumps(doc).encode()[:4096]
    body = json.dumps(
        {"items": doc["items"][: max(1, len(doc["items"]) * 4096 // len(json.dumps(doc)))]}
    ).encode()
    return {
        "GET query": lambda: WafRequest("GET", "/search?q=red+shoes&page=2&sort=price", headers=H),
        "1KB form POST": lambda: WafRequest(
            "POST", "/submit", headers=(*H, ("Content-Type", "application/x-www-form-urlencoded")), body=form
        ),
        "4KB JSON POST": lambda: WafRequest(
            "POST", "/api/orders", headers=(*H, ("Content-Type", "application/json")), body=body
        ),
    }


def measure(fn: Callable[[], object], n: int) -> float:
    """Median µs per call (robust to GC pauses and a noisy neighbour on a shared machine)."""
    for _ in range(min(50, n)):
        fn()
    times = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times) * 1e6


def _inspect(engine: WafEngine, make: Callable[[], WafRequest]) -> object:
    return engine.inspect(make())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rules", default="/usr/share/modsecurity-crs/rules")
    ap.add_argument("--setup", default="/etc/modsecurity/crs/crs-setup.conf")
    ap.add_argument("--prefilter-only", action="store_true", help="skip the (slow) no-prefilter engine")
    args = ap.parse_args()
    paths = [Path(args.setup), Path(args.rules)]
    engines: dict[str, WafEngine] = {}
    modes = (("prefilter", True),) if args.prefilter_only else (("prefilter", True), ("no prefilter", False))
    for name, prefilter in modes:
        t0 = time.perf_counter()
        engines[name] = WafEngine.load(paths, prefilter=prefilter)
        print(f"load ({name}): {time.perf_counter() - t0:.2f} s")
    print(
        f"{'request':16} {'size':>6} {'baseline µs':>12} "
        + " ".join(f"{k + ' µs':>16} {'µs/KB':>8} {'x':>7}" for k in engines)
    )
    for name, make in requests().items():
        req = make()
        size = len(req.uri) + len(req.body) + sum(len(k) + len(v) for k, v in req.headers)
        base = measure(make, args.n)
        row = f"{name:16} {size:6} {base:12.2f} "
        for engine in engines.values():
            assert not engine.inspect(req).would_block
            us = measure(functools.partial(_inspect, engine, make), args.n)
            row += f"{us:16.1f} {us / (size / 1024):8.1f} {us / base:7.0f}"
        print(row)


if __name__ == "__main__":
    main()
