"""DecisionLog: one JSON line per request, written off the request path, bounded, flushed on close."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from garrison.config.models import DecisionLog as DecisionLogConfig
from garrison.errors import ConfigError
from garrison.pipeline.context import Identity, RequestContext
from garrison.pipeline.route import Route, Upstream
from garrison.pipeline.verdicts import Deny
from garrison.reasons import Reason
from garrison.telemetry.decisions import FIELDS, DecisionLog, DecisionRecord, decision_record

TS = 1_700_000_000.123  # 2023-11-14T22:13:20.123Z


def allow(request_id: str = "r1", path: str = "/orders/1") -> DecisionRecord:
    return (
        TS, request_id, "orders", "GET", path, 200, "pipeline", "allowed", "allow-ms2",
        "spiffe://garrison.local/svc/microservice2", "10.0.0.7", 0.000731, [],
    )  # fmt: skip


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_should_write_one_json_line_per_record_with_every_field(tmp_path: Path) -> None:
    out = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(out))
    log.record(allow())
    shadow = [Deny(Reason.POLICY_NO_MATCH, "authz", "r-7"), Deny(Reason.RATE_LIMITED, "rate_limit")]
    log.record(
        (TS + 1.5, "r2", "", "POST", "/x", 404, "route", "no_route", None, None, "::1", 0.0021, shadow)
    )
    log.close()
    first, second = read_lines(out)
    assert tuple(first) == FIELDS
    assert first == {
        "ts": "2023-11-14T22:13:20.123Z",
        "request_id": "r1",
        "route": "orders",
        "method": "GET",
        "path": "/orders/1",
        "status": 200,
        "decision": "allow",
        "stage": "pipeline",
        "reason": "allowed",
        "rule": "allow-ms2",
        "principal": "spiffe://garrison.local/svc/microservice2",
        "client_ip": "10.0.0.7",
        "duration_ms": 0.731,
        "shadow": [],
    }
    assert second["ts"] == "2023-11-14T22:13:21.623Z"
    assert (second["route"], second["rule"], second["principal"]) == (None, None, None)
    assert (second["decision"], second["stage"], second["reason"], second["status"]) == (
        "deny", "route", "no_route", 404,
    )  # fmt: skip
    assert second["duration_ms"] == 2.1
    assert second["shadow"] == [
        {"stage": "authz", "reason": "policy_no_match", "rule": "r-7"},
        {"stage": "rate_limit", "reason": "rate_limited", "rule": None},
    ]


def test_should_have_no_field_that_can_carry_a_credential_or_query() -> None:
    forbidden = {"authorization", "cookie", "token", "query", "headers", "raw_target", "url"}
    assert not forbidden & set(FIELDS)


def test_should_write_the_path_exactly_as_given_and_escape_it(tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    log = DecisionLog(str(out))
    weird = '/a"b\\c\n{"injected":1}/\u00e9/\x00'
    log.record(allow(path=weird))
    log.close()
    lines = out.read_text().splitlines()
    assert len(lines) == 1  # a newline in a field cannot start a forged record
    assert json.loads(lines[0])["path"] == weird
    assert lines[0].isascii()


def test_should_drop_the_newest_records_when_full_and_count_them(tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    log = DecisionLog(str(out), queue_size=10, flush_interval=60)  # the writer sleeps: nothing drains
    for i in range(15):
        log.record(allow(request_id=f"r{i}"))
    assert log.pending == 10
    assert log.dropped == 5
    log.close()
    assert [r["request_id"] for r in read_lines(out)] == [f"r{i}" for i in range(10)]
    assert log.dropped == 5


def test_should_flush_everything_buffered_on_close(tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    log = DecisionLog(str(out), flush_interval=60)
    n = 5000
    for i in range(n):
        log.record(allow(request_id=str(i)))
    log.close()
    assert len(read_lines(out)) == n
    assert (log.written, log.dropped) == (n, 0)
    log.record(allow())  # after close: ignored, never raises
    log.close()  # idempotent
    assert len(read_lines(out)) == n


def test_should_write_in_the_background_without_close(tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    log = DecisionLog(str(out), flush_interval=0.01)
    try:
        log.record(allow())
        wait_for(lambda: log.written == 1)
        assert read_lines(out)[0]["request_id"] == "r1"
    finally:
        log.close()


def test_should_cost_nothing_and_write_nothing_when_disabled() -> None:
    log = DecisionLog(None)
    log.record(allow())
    assert (log.enabled, log.pending, log.dropped) == (False, 0, 0)
    log.reopen()
    log.close()


def test_should_write_to_stderr_for_dash(capsys: pytest.CaptureFixture[str]) -> None:
    log = DecisionLog("-", flush_interval=60)
    log.record(allow())
    log.close()
    assert json.loads(capsys.readouterr().err)["request_id"] == "r1"


def test_should_reopen_the_file_after_rotation(tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    log = DecisionLog(str(out), flush_interval=60)
    try:
        log.record(allow(request_id="before"))
        log.flush()
        wait_for(lambda: log.written == 1)
        out.rename(tmp_path / "d.jsonl.1")
        log.reopen()
        log.record(allow(request_id="after"))
    finally:
        log.close()
    assert [r["request_id"] for r in read_lines(tmp_path / "d.jsonl.1")] == ["before"]
    assert [r["request_id"] for r in read_lines(out)] == ["after"]


def test_should_count_a_malformed_record_and_keep_writing(tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    log = DecisionLog(str(out), flush_interval=60)
    log.record(("not", "a", "record"))  # type: ignore[arg-type]
    log.record(allow())
    log.close()
    assert [r["request_id"] for r in read_lines(out)] == ["r1"]
    assert log.dropped == 1


def test_should_create_the_file_not_world_readable(tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    DecisionLog(str(out)).close()
    assert stat.S_IMODE(os.stat(out).st_mode) & 0o007 == 0


def test_should_raise_config_error_for_an_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"telemetry\.decision_log\.path"):
        DecisionLog(str(tmp_path / "missing-dir" / "d.jsonl"))


def test_should_build_from_config(tmp_path: Path) -> None:
    log = DecisionLog.from_config(DecisionLogConfig(path=str(tmp_path / "d.jsonl"), queue_size=2048))
    try:
        assert log.enabled
    finally:
        log.close()
    assert not DecisionLog.from_config(DecisionLogConfig()).enabled


def test_should_build_the_record_from_a_request_context() -> None:
    ctx = RequestContext(
        method="GET",
        raw_target=b"/orders/1?access_token=secret",
        headers=[(b"authorization", b"Bearer secret")],
        client_addr="10.0.0.7",
        request_id="r9",
        now=TS,
    )
    ctx.path = "/orders/1"
    ctx.query = b"access_token=secret"
    route = Route("orders", "/orders", True, frozenset({"GET"}), None, Upstream("http", "127.0.0.1", 9))
    assert decision_record(ctx, 404, 0.001) == (
        TS, "r9", "", "GET", "/orders/1", 404, "pipeline", "allowed", None, None, "10.0.0.7", 0.001, [],
    )  # fmt: skip
    ctx.route = route
    ctx.identity = Identity("spiffe://garrison.local/svc/ms2", "workload", "cp", "ms2", "jwt")
    ctx.rule_id = "allow-ms2"
    ctx.shadow_denials.append(Deny(Reason.RATE_LIMITED, "rate_limit"))
    rec = decision_record(ctx, 200, 0.001)
    assert rec[2] == "orders"
    assert rec[6:10] == ("pipeline", "allowed", "allow-ms2", "spiffe://garrison.local/svc/ms2")
    assert rec[12] is ctx.shadow_denials
    ctx.decision = Deny(Reason.POLICY_DENY, "authz", "deny-all")
    assert decision_record(ctx, 403, 0.001)[6:9] == ("authz", "policy_deny", "deny-all")
    assert "secret" not in repr(decision_record(ctx, 403, 0.001))
