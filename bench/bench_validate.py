"""Sans-IO microbenchmark of request validation and response DLP, with same-run baselines.

    .venv/bin/python bench/bench_validate.py [--n 3000] [--repeat 5]

Printed in µs (CPU time of this thread, best of ``--repeat``):

- ``json.loads``: plain parse of the same body (the baseline);
- ``limits+parse``: ``parse_json`` (bomb limits, duplicate keys, strict UTF-8);
- ``schema``: the compiled fastjsonschema check of the already-parsed value;
- ``check_body``: the whole body path the proxy calls (parse + schema);
- ``dlp redact``/``dlp clean``: µs per KB of JSON with / without something to redact;
- ``leak scan``: µs per KB of a clean error page.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from garrison.dlp import LeakDetector, Redactor
from garrison.validate import CompiledSchema, JsonLimits, MediaTypes, RequestValidator, parse_json

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["customer", "items", "currency"],
    "properties": {
        "customer": {
            "type": "object",
            "required": ["id", "email"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "pattern": "^[a-z0-9-]{8,36}$"},
                "email": {"type": "string", "maxLength": 254, "format": "email"},
                "name": {"type": "string", "maxLength": 100},
            },
        },
        "currency": {"enum": ["EUR", "USD", "GBP"]},
        "note": {"type": "string", "maxLength": 500},
        "items": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"$ref": "#/$defs/item"}},
    },
    "$defs": {
        "item": {
            "type": "object",
            "required": ["sku", "qty", "price"],
            "additionalProperties": False,
            "properties": {
                "sku": {"type": "string", "pattern": "^[A-Z0-9]{4,12}$"},
                "qty": {"type": "integer", "minimum": 1, "maximum": 1000},
                "price": {"type": "number", "exclusiveMinimum": 0},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}},
            },
        }
    },
}


def order(n: int) -> bytes:
    return json.dumps(
        {
            "customer": {"id": "cust-0001-abcd", "email": "a@example.com", "name": "Ada"},
            "currency": "EUR",
            "note": "leave at door",
            "items": [
                {"sku": f"SKU{i:05d}", "qty": i % 9 + 1, "price": 9.99, "tags": ["red", "xl"]}
                for i in range(n)
            ],
        }
    ).encode()


def timed(fn: Callable[[], object], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.thread_time()
        for _ in range(n):
            fn()
        best = min(best, time.thread_time() - t0)
    return best / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    schema = CompiledSchema(SCHEMA)
    limits = JsonLimits()
    v = RequestValidator(
        limits=limits, max_body_bytes=1 << 20, media=MediaTypes({"application/json": schema})
    )
    headers = [(b"content-type", b"application/json")]
    for label, body in (("small", order(1)), ("4KB", order(57))):
        value = json.loads(body)
        base = timed(lambda b=body: json.loads(b), a.n, a.repeat)
        lp = timed(lambda b=body: parse_json(b, limits), a.n, a.repeat)
        sc = timed(lambda x=value: schema.validate(x), a.n, a.repeat)
        cb = timed(lambda b=body: v.check_body("POST", "/o", headers, b), a.n, a.repeat)
        print(
            f"validate {label:5} ({len(body):5} B): json.loads {base:7.1f} µs | limits+parse {lp:7.1f} | "
            f"schema {sc:7.1f} | check_body {cb:7.1f} ({cb / base:.1f}x json.loads)"
        )
    r = Redactor(fields=["password", "secret", "token"])
    clean = order(57)
    dirty = clean.replace(b'"name": "Ada"', b'"name": "Ada", "password": "x", "card": "4111 1111 1111 1111"')
    kb = len(clean) / 1024
    base = timed(lambda: json.loads(clean), a.n, a.repeat) / kb
    red = timed(lambda: r.redact(dirty), a.n, a.repeat) / kb
    cln = timed(lambda: r.redact(clean), a.n, a.repeat) / kb
    d = LeakDetector()
    page = b"<html><body><h1>Internal error</h1><p>" + b"Something went wrong. " * 180 + b"</p></body></html>"
    leak = timed(lambda: d.find(page), a.n, a.repeat) / (len(page) / 1024)
    print(
        f"dlp: json.loads {base:.1f} µs/KB | redact (fields+card present) {red:.1f} µs/KB | "
        f"nothing to redact (prefilter) {cln:.1f} µs/KB | leak scan {leak:.1f} µs/KB"
    )


if __name__ == "__main__":
    main()
