"""Microbenchmark: PolicyIndex.decide at 10, 1,000 and 10,000 rules, and TokenBucketLimiter.hit.

    .venv/bin/python bench/bench_policy.py [--repeat 7]

Rules have realistic shapes: per-service allows on many routes (some with path prefixes and methods),
per-user rules, issuer-level claim+scope rules, service denies on admin paths, and two global rules
(a CIDR deny and an any-route allow) that every decision has to consider. Prints µs per decision for
hits (allowed by a rule) and misses (default deny), and the 10,000 / 10 ratio measured in this run.
Times are CPU time of this process (``time.process_time``), as in the ARCHITECTURE §8 budget, so
other load on the machine inflates them less than wall-clock time would.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import timeit
from typing import Any

from garrison.config.models import GarrisonConfig
from garrison.pipeline.context import Identity
from garrison.policy import PolicyIndex, compile_policies
from garrison.ratelimit import TokenBucketLimiter

TD = "garrison.local"
CORP = "https://idp.corp.example"
Request = tuple[str, str, str, Identity | None, str]  # route, method, path, identity, client_ip
SIZES = (10, 1_000, 10_000)


def svc(i: int) -> Identity:
    p = f"spiffe://{TD}/svc/svc{i}"
    return Identity(p, "workload", "mesh", p, "mtls")


def person(i: int, **claims: Any) -> Identity:
    return Identity(f"{CORP}#user{i}", "user", "corp", f"user{i}", "jwt", claims, frozenset({"read"}))


def build(n_rules: int) -> tuple[GarrisonConfig, dict[str, list[Request]], list[Request]]:
    """A config with ``n_rules`` policies, requests that hit an allow rule (by shape), requests that miss.

    Shapes cycle every 8 rules, so the 10-rule config already has one rule of each shape.
    """
    n_routes = max(3, n_rules // 20)
    n_services = max(4, n_rules // 8)
    routes = [
        {"name": f"route{r}", "path": f"/r{r}/**", "upstream": "http://127.0.0.1:9000"}
        for r in range(n_routes)
    ]
    services: dict[str, Any] = {f"svc{s}": {} for s in range(n_services)}
    policies: list[dict[str, Any]] = [
        {
            "name": "block-bad-net",
            "effect": "deny",
            "from": {"any": True},
            "when": {"source_cidrs": ["192.0.2.0/24"]},
        },
        {
            "name": "ops-read-all",
            "methods": ["GET"],
            "from": {"users": [{"issuer": "corp", "subject": "ops"}]},
        },
    ]
    hits: dict[str, list[Request]] = {"service": [], "service+path": [], "user": [], "claims": []}
    for i in range(n_rules - len(policies)):
        r, s, kind = i % n_routes, i % n_services, i % 8
        route = f"route{r}"
        if kind <= 3:  # a service may call a route (half of them only below a versioned prefix)
            rule: dict[str, Any] = {"routes": [route], "from": {"services": [f"svc{s}"]}}
            if kind % 2:
                rule["paths"] = [f"/r{r}/v{i}/**"]
                rule["methods"] = ["GET", "POST"]
                hits["service+path"].append((route, "GET", f"/r{r}/v{i}/items/7", svc(s), "10.1.2.3"))
            else:
                hits["service"].append((route, "GET", f"/r{r}/items/{i}", svc(s), "10.1.2.3"))
        elif kind <= 5:  # a user may use their own corner of a route
            rule = {
                "routes": [route],
                "paths": [f"/r{r}/users/user{i}/**"],
                "from": {"users": [{"issuer": "corp", "subject": f"user{i}"}]},
            }
            hits["user"].append((route, "GET", f"/r{r}/users/user{i}/profile", person(i), "10.1.2.3"))
        elif kind == 6:  # any corp user of a team, with a scope
            rule = {
                "routes": [route],
                "from": {"issuers": ["corp"]},
                "when": {"claims": {"team": f"team{i}"}, "scopes": ["read"]},
            }
            hits["claims"].append(
                (route, "GET", f"/r{r}/reports", person(10**7 + i, team=f"team{i}"), "10.1.2.3")
            )
        else:  # a service is kept out of a route's admin area
            rule = {
                "effect": "deny",
                "routes": [route],
                "paths": [f"/r{r}/admin/**"],
                "from": {"services": [f"svc{(s + 1) % n_services}"]},
            }
        policies.append({"name": f"p{i}", **rule})
    cfg = GarrisonConfig.model_validate(
        {
            "trust_domain": TD,
            "issuers": [{"name": "corp", "issuer": CORP, "audiences": ["g"], "keys": [{"pem": "x"}]}],
            "services": services,
            "routes": routes,
            "policies": policies,
        }
    )
    rng = random.Random(n_rules)
    misses: list[Request] = [
        (f"route{rng.randrange(n_routes)}", "GET", "/r0/items/1", svc(n_services + 5), "10.1.2.3"),  # no rule
        (f"route{rng.randrange(n_routes)}", "GET", "/r0/items/1", None, "10.1.2.3"),  # anonymous
        ("route1", "DELETE", "/r1/v1/items/7", svc(1), "10.1.2.3"),  # method not allowed by p1
        ("route0", "GET", "/r0/users/user4/x", person(5), "10.1.2.3"),  # someone else's corner
        ("route2", "GET", "/r2/reports", person(1, team="nobody"), "10.1.2.3"),  # claim mismatch
    ]
    return cfg, hits, misses


def timed_run(index: PolicyIndex, reqs: list[Request]) -> float:
    """CPU µs per decision over one pass of ~20,000 decisions."""
    decide = index.decide
    number = max(1, 20_000 // len(reqs))
    t0 = time.process_time()
    for _ in range(number):
        for route, method, path, identity, ip in reqs:
            decide(route=route, public=False, method=method, path=path, identity=identity, client_ip=ip)
    return (time.process_time() - t0) / number / len(reqs) * 1e6


def check(index: PolicyIndex, reqs: list[Request], *, allowed: bool) -> None:
    for route, method, path, identity, ip in reqs:
        d = index.decide(route=route, public=False, method=method, path=path, identity=identity, client_ip=ip)
        if d.allowed is not allowed or (allowed and d.rule_id is None):
            raise SystemExit(f"bench bug: expected allowed={allowed} for {route} {path} {identity}: {d}")


def bench_policy(repeat: int) -> None:
    print(f"policy: PolicyIndex.decide, CPU µs per decision (best of {repeat}, sizes interleaved)")
    cases: dict[int, tuple[PolicyIndex, list[Request], list[Request]]] = {}
    compile_s: dict[int, float] = {}
    for n in SIZES:
        cfg, hits_by_shape, misses = build(n)
        t0 = time.process_time()
        index = compile_policies(cfg)
        compile_s[n] = time.process_time() - t0
        rng = random.Random(1)  # the same mix of rule shapes at every size: 50 requests per shape
        hits = [rng.choice(by_shape) for by_shape in hits_by_shape.values() for _ in range(50)]
        check(index, hits, allowed=True)
        check(index, misses, allowed=False)
        cases[n] = (index, hits, misses)
    best = {(n, kind): float("inf") for n in SIZES for kind in ("hit", "miss")}
    gc.disable()
    try:
        for _ in range(repeat):  # interleaved, so a burst of load elsewhere hits every size alike
            for n, (index, hits, misses) in cases.items():
                best[n, "hit"] = min(best[n, "hit"], timed_run(index, hits))
                best[n, "miss"] = min(best[n, "miss"], timed_run(index, misses))
    finally:
        gc.enable()
    print(f"{'rules':>7} {'compile s':>10} {'hit µs':>8} {'miss µs':>8}")
    for n in SIZES:
        print(f"{n:>7} {compile_s[n]:>10.3f} {best[n, 'hit']:>8.2f} {best[n, 'miss']:>8.2f}")
    ratio_hit = best[10_000, "hit"] / best[10, "hit"]
    ratio_miss = best[10_000, "miss"] / best[10, "miss"]
    print(f"ratio 10,000 / 10 rules: hit {ratio_hit:.2f}x, miss {ratio_miss:.2f}x")


def bench_ratelimit(repeat: int) -> None:
    print(f"ratelimit: TokenBucketLimiter.hit, CPU µs per hit (best of {repeat})")
    keys = [(f"10.0.{i // 256}.{i % 256}",) for i in range(1_000)]
    for label, max_keys in (("keys fit", 100_000), ("evicting", 500)):
        limiter = TokenBucketLimiter(rate=100.0, burst=50, max_keys=max_keys)

        def run(limiter: TokenBucketLimiter = limiter) -> None:
            hit, now = limiter.hit, 0.0
            for k in keys:
                now += 0.0001
                hit(k, now)

        number = 20
        us = (
            min(timeit.repeat(run, timer=time.process_time, number=number, repeat=repeat))
            / number
            / len(keys)
            * 1e6
        )
        print(f"  {label:<9} {us:.2f} µs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    bench_policy(args.repeat)
    bench_ratelimit(args.repeat)


if __name__ == "__main__":
    main()
