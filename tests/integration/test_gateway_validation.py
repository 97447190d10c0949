"""Request validation in the route chain, over real sockets: JSON Schema and OpenAPI routes, JSON-bomb
limits, 413/415, safe 400 bodies, shadow mode, and validation only after authentication."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.gateway import GatewayThread, Signer, base_config

ORDER_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["sku", "qty"],
    "properties": {
        "sku": {"type": "string", "maxLength": 32},
        "qty": {"type": "integer", "minimum": 1},
        "meta": {},
    },
}

OPENAPI = """
openapi: 3.1.0
info: {title: items, version: "1"}
paths:
  /items/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: integer}}
    get:
      parameters:
        - {name: limit, in: query, schema: {type: integer, maximum: 100}}
      responses: {"200": {description: ok}}
    put:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [name]
              properties: {name: {type: string}}
      responses: {"200": {description: ok}}
"""

ROUTES = """
  - name: orders
    path: /orders/**
    methods: [POST, PUT]
    service: microservice1
    public: true
    validate: {json_schema: schemas/order.json, max_depth: 8, max_body_bytes: 1048000}
  - name: small
    path: /small
    methods: [POST]
    service: microservice1
    public: true
    validate: {json_schema: schemas/order.json, max_body_bytes: 4096}
  - name: items
    path: /api/**
    methods: [GET, PUT]
    service: microservice1
    public: true
    validate: {openapi: api.yaml, base_path: /api}
  - name: shadowed
    path: /shadow/orders
    methods: [POST]
    service: microservice1
    public: true
    validate: {json_schema: schemas/order.json}
    shadow: {validate: true}
  - name: private-orders
    path: /private/orders
    methods: [POST]
    service: microservice1
    validate: {json_schema: schemas/order.json}
"""

POLICY = """
  - name: ms2-posts-orders
    routes: [private-orders]
    from: {services: [microservice2]}
"""


@pytest.fixture
def gw(tmp_path: Path, signer: Signer) -> Iterator[GatewayThread]:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "order.json").write_text(json.dumps(ORDER_SCHEMA))
    (tmp_path / "api.yaml").write_text(OPENAPI)
    log = tmp_path / "decisions.jsonl"

    def cfg(port: int) -> str:
        text = base_config(signer, port, log=log)
        text = text.replace("routes:\n", "routes:\n" + ROUTES.lstrip("\n"), 1)
        return text.replace("policies:\n", "policies:\n" + POLICY.lstrip("\n"), 1)

    g = GatewayThread(tmp_path, cfg).start()
    try:
        yield g
    finally:
        g.stop()


def _records(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (tmp_path / "decisions.jsonl").read_text().splitlines()]


def test_valid_body_is_forwarded_with_its_length(gw: GatewayThread) -> None:
    body = b'{"sku":"a-1","qty":2}'
    r = httpx.post(gw.url + "/orders/new", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert r.json()["body_bytes"] == len(body)


def test_chunked_valid_body_is_buffered_and_forwarded(gw: GatewayThread) -> None:
    parts = [b'{"sku":', b'"a-1",', b'"qty":3}']
    r = httpx.post(gw.url + "/orders/new", content=iter(parts), headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert r.json()["body_bytes"] == sum(map(len, parts))


@pytest.mark.parametrize(
    ("body", "code", "detail"),
    [
        pytest.param(b'{"sku":"a","qty":"two"}', "validation_failed", "$.qty: must be integer", id="type"),
        pytest.param(b'{"sku":"a"}', "validation_failed", "missing required property 'qty'", id="missing"),
        pytest.param(b'{"sku":"a","qty":0}', "validation_failed", "$.qty: must be >= 1", id="minimum"),
        pytest.param(b'{"sku":"a","qty":1', "json_malformed", "not valid JSON", id="malformed"),
        pytest.param(b'{"sku":"a","sku":"b","qty":1}', "json_malformed", "duplicate key", id="dup-key"),
        pytest.param(
            b'{"sku":"a","qty":1,"meta":' + b"[" * 50 + b"]" * 50 + b"}", "json_too_deep", "deeper", id="deep"
        ),
    ],
)
def test_invalid_body_is_400_with_a_safe_detail(
    gw: GatewayThread, body: bytes, code: str, detail: str
) -> None:
    r = httpx.post(gw.url + "/orders/new", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    out = r.json()
    assert set(out) == {"error", "request_id", "detail"}
    assert out["error"] == code and detail in out["detail"]
    assert out["request_id"] == r.headers["x-request-id"]
    assert r.headers["content-type"] == "application/json"


def test_wrong_content_type_is_415(gw: GatewayThread) -> None:
    r = httpx.post(gw.url + "/orders/new", content=b"sku=a&qty=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["error"] == "unsupported_media_type"


def test_oversized_content_length_is_413_before_buffering(gw: GatewayThread) -> None:
    body = b'{"sku":"a","qty":1,"meta":"' + b"x" * 5000 + b'"}'
    r = httpx.post(gw.url + "/small", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"] == "body_too_large"


def test_oversized_chunked_body_is_413(gw: GatewayThread) -> None:
    parts = [b'{"sku":"a","qty":1,"meta":"'] + [b"x" * 1000] * 8 + [b'"}']
    r = httpx.post(gw.url + "/small", content=iter(parts), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"error": "body_too_large", "request_id": r.headers["x-request-id"]}


def test_a_1mb_string_is_never_echoed(gw: GatewayThread) -> None:
    body = b'{"sku":"' + b"A" * 1_000_000 + b'","qty":1}'
    r = httpx.post(gw.url + "/orders/new", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == "json_too_large"
    assert len(r.content) < 400 and b"AAAAAAAAAA" not in r.content


def test_hostile_characters_in_detail_are_escaped(gw: GatewayThread) -> None:
    body = b'{"sku":"a","qty":1,"\\u0000<script>\\n":1}'
    schema_strict = httpx.post(
        gw.url + "/orders/new", content=body, headers={"content-type": "application/json"}
    )
    assert schema_strict.status_code == 200  # additional properties allowed by this schema
    r = httpx.post(
        gw.url + "/orders/new",
        content=b'{"sku":"\\u0000\\n<b>' + b"z" * 40 + b'","qty":1}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert b"\n" not in r.content and b"\x00" not in r.content


def test_openapi_path_template_and_parameter_types(gw: GatewayThread) -> None:
    ok = httpx.get(gw.url + "/api/items/12?limit=5")
    assert ok.status_code == 200 and ok.json()["path"] == "/api/items/12?limit=5"
    bad_id = httpx.get(gw.url + "/api/items/abc")
    assert bad_id.status_code == 400 and bad_id.json()["error"] == "validation_failed"
    assert "must be integer" in bad_id.json()["detail"]
    bad_query = httpx.get(gw.url + "/api/items/12?limit=x")
    assert bad_query.status_code == 400 and "limit" in bad_query.json()["detail"]
    too_big = httpx.get(gw.url + "/api/items/12?limit=500")
    assert too_big.status_code == 400
    assert httpx.get(gw.url + "/api/nothing/here").status_code == 404
    put_ok = httpx.put(gw.url + "/api/items/3", json={"name": "x"})
    assert put_ok.status_code == 200
    put_bad = httpx.put(gw.url + "/api/items/3", json={"name": 3})
    assert put_bad.status_code == 400 and "$.name: must be string" in put_bad.json()["detail"]
    no_body = httpx.put(gw.url + "/api/items/3")
    assert no_body.status_code == 400


def test_shadow_validate_passes_and_records(gw: GatewayThread, tmp_path: Path) -> None:
    body = b'{"sku":"a","qty":"x"}'
    r = httpx.post(gw.url + "/shadow/orders", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert r.json()["body_bytes"] == len(body)
    plain = httpx.post(gw.url + "/shadow/orders", content=b"x", headers={"content-type": "text/plain"})
    assert plain.status_code == 200
    gw.stop()
    shadow = [rec for rec in _records(tmp_path) if rec.get("shadow")]
    assert len(shadow) == 2 and shadow[0]["decision"] == "allow"
    assert shadow[1]["shadow"] == [  # recorded once, from the head check
        {"stage": "validate", "reason": "unsupported_media_type", "rule": "validate:content_type"}
    ]
    assert shadow[0]["shadow"] == [
        {"stage": "validate", "reason": "validation_failed", "rule": "validate:type"}
    ]


def test_unauthenticated_junk_never_reaches_the_validator(gw: GatewayThread, signer: Signer) -> None:
    junk = b"{" * 10_000
    r = httpx.post(gw.url + "/private/orders", content=junk, headers={"content-type": "application/json"})
    assert r.status_code == 401
    assert r.json()["error"] == "authn_required"
    auth = {"authorization": f"Bearer {signer.svc('microservice2')}", "content-type": "application/json"}
    bad = httpx.post(gw.url + "/private/orders", content=junk, headers=auth)
    assert bad.status_code == 400 and bad.json()["error"] == "json_too_deep"
    good = httpx.post(gw.url + "/private/orders", content=b'{"sku":"s","qty":1}', headers=auth)
    assert good.status_code == 200


def test_keep_alive_survives_a_validation_denial(gw: GatewayThread) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        bad = b'{"qty":0,"sku":"a"}'
        good = b'{"qty":1,"sku":"a"}'
        for body in (bad, good):
            s.sendall(
                b"POST /orders/x HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 ") and b"HTTP/1.1 200 " in data
