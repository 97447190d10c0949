"""Read CRS regression tests (ftw YAML) into WafRequests and judge a WafResult against them.

Request building mirrors ftw 1.x (the runner CRS 3.3 used): GET / HTTP/1.1 by default; a body with no
Content-Type gets ``application/x-www-form-urlencoded``, and a body that is not already percent-encoded
is re-encoded with ``urlencode(parse_qsl(data))`` unless ``stop_magic`` is set. Reads files; no sockets.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import yaml

from garrison.waf.request import WafRequest, WafResult

# CRS 3.x tests/regression/README: the setup the regression suite is run with (PL4, detection only).
CRS3_TEST_TX = {
    "crs_validate_utf8_encoding": "1",
    "arg_name_length": "100",
    "arg_length": "400",
    "max_num_args": "255",
    "total_arg_length": "64000",
    "max_file_size": "1048576",
    "combined_file_sizes": "1048576",
}
CRS3_TEST_PARANOIA = 4

_ID = re.compile(r"id \"?(\d{6})")


@dataclass(frozen=True, slots=True)
class CrsTest:
    """One ftw test: a request plus the rule ids that must (and must not) be logged."""

    rule_file: str
    title: str
    request: WafRequest | None
    expect_ids: frozenset[int]
    forbid_ids: frozenset[int]
    status: tuple[int, ...] = ()
    not_applicable: str = ""  # why the test cannot be judged by a sans-IO engine

    def judge(self, result: WafResult) -> bool:
        logged = result.matched_ids
        if self.expect_ids or self.forbid_ids:
            return self.expect_ids <= logged and not (self.forbid_ids & logged)
        if 403 in self.status:
            return result.would_block
        return not result.would_block


def _ids(value: Any) -> frozenset[int]:
    if value is None:
        return frozenset()
    return frozenset(int(x) for x in _ID.findall(str(value)))


def _raw_request(raw: bytes) -> WafRequest:
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    lines = head.decode("latin-1").split("\n")
    parts = lines[0].split(" ")
    method, uri = parts[0], parts[1] if len(parts) > 1 else "/"
    version = parts[2] if len(parts) > 2 else "HTTP/1.1"
    headers = tuple((k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:] if ln))
    return WafRequest(method, uri, version, headers, body)


def build_request(inp: dict[str, Any]) -> WafRequest:
    """The request ftw would send for a stage's ``input``."""
    if "encoded_request" in inp:
        return _raw_request(base64.b64decode(str(inp["encoded_request"])))
    if "raw_request" in inp:
        return _raw_request(str(inp["raw_request"]).encode("utf-8"))
    headers: dict[str, str] = {str(k): str(v) for k, v in (inp.get("headers") or {}).items()}
    data = inp.get("data", "")
    if isinstance(data, list):
        data = "\r\n".join(str(x) for x in data)
    data = "" if data is None else str(data)
    magic = not inp.get("stop_magic", False)
    if data and magic:
        if "Content-Type" not in headers:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if headers.get("Content-Type") == "application/x-www-form-urlencoded" and unquote(data) == data:
            pairs = parse_qsl(data)
            if pairs:
                data = urlencode(pairs)
        if "Content-Length" not in headers:
            headers["Content-Length"] = str(len(data.encode("utf-8")))
    return WafRequest(
        method=str(inp.get("method", "GET")),
        uri=str(inp.get("uri", "/")),
        http_version=str(inp.get("version", "HTTP/1.1")),
        headers=tuple((k, v.encode("utf-8").decode("latin-1")) for k, v in headers.items()),
        body=data.encode("utf-8"),
    )


def load_file(path: Path) -> Iterator[CrsTest]:
    doc = yaml.safe_load(path.read_bytes())
    rule_file = path.parent.name
    for test in doc.get("tests") or []:
        stages = test.get("stages") or []
        title = str(test.get("test_title", path.stem))
        if len(stages) != 1:
            yield CrsTest(rule_file, title, None, frozenset(), frozenset(), (), "multi-stage test")
            continue
        stage = stages[0].get("stage", stages[0])
        out = stage.get("output") or {}
        status = out.get("status", ())
        statuses = tuple(int(s) for s in (status if isinstance(status, list) else [status] if status else []))
        expect, forbid = _ids(out.get("log_contains")), _ids(out.get("no_log_contains"))
        reason = ""
        if out.get("expect_error"):
            reason = "expects a connection/server error"
        elif not expect and not forbid and 403 not in statuses:
            reason = f"expects HTTP status {list(statuses)} from the web server"
        yield CrsTest(rule_file, title, build_request(stage["input"]), expect, forbid, statuses, reason)


def load_tests(root: Path) -> list[CrsTest]:
    """Every test under ``root`` (a ``tests/regression/tests`` tree or any directory of ftw YAML)."""
    files = sorted(root.rglob("*.yaml"))
    return [t for f in files for t in load_file(f)]


__all__ = ["CRS3_TEST_PARANOIA", "CRS3_TEST_TX", "CrsTest", "build_request", "load_file", "load_tests"]
