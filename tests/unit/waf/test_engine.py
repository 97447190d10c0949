from __future__ import annotations

from pathlib import Path

import pytest

from garrison.waf import WafEngine, WafRequest

RULES = r"""
SecDefaultAction "phase:1,log,pass"
SecDefaultAction "phase:2,log,pass"
SecAction "id:1,phase:1,nolog,pass,setvar:tx.score=0"
SecRule ARGS "@rx (?i)evil(\d+)" "id:10,phase:2,capture,t:none,t:lowercase,block,msg:'evil %{tx.1}',\
    logdata:'%{MATCHED_VAR_NAME}=%{MATCHED_VAR}',setvar:tx.score=+5"
SecRule ARGS:/^pw/ "@streq secret" "id:11,phase:2,deny,msg:'pw'"
SecRule &REQUEST_HEADERS:X-Skip "@eq 1" "id:20,phase:2,pass,nolog,skipAfter:END"
SecRule REQUEST_METHOD "@streq POST" "id:21,phase:2,pass,msg:'post',chain"
    SecRule REQUEST_BODY "@contains chained" "setvar:tx.chained=1"
SecRule REQUEST_FILENAME "@endsWith .bak" "id:22,phase:1,pass,msg:'backup',ctl:ruleRemoveById=10"
SecRule ARGS|!ARGS:safe "@pm bad worse" "id:23,phase:2,pass,msg:'pm'"
SecMarker END
SecRule TX:SCORE "@ge 5" "id:99,phase:2,deny,msg:'score %{tx.score}'"
"""


@pytest.fixture(params=[True, False], ids=["prefilter", "no-prefilter"])
def engine(tmp_path: Path, request: pytest.FixtureRequest) -> WafEngine:
    path = tmp_path / "rules.conf"
    path.write_text(RULES)
    return WafEngine.load([path], prefilter=request.param)


def get(uri: str, *headers: tuple[str, str]) -> WafRequest:
    return WafRequest("GET", uri, headers=(("Host", "x"), *headers))


def test_should_match_capture_and_score(engine: WafEngine) -> None:
    res = engine.inspect(get("/?a=EVIL42"))
    assert res.matched_ids == {10, 99}
    assert res.matches[0].msg == "evil 42"
    assert res.matches[0].logdata == "ARGS:a=evil42"
    assert res.would_block and res.blocking_rule == 99
    assert res.anomaly_score == 0  # no CRS score variables in this rule set


def test_deny_stops_processing_in_blocking_mode(engine: WafEngine) -> None:
    res = engine.inspect(get("/?pw1=secret&a=evil1"))
    assert res.matched_ids == {10, 11}  # 99 never runs: 11 denied first
    assert res.blocked and res.blocking_rule == 11


def test_detection_only_records_but_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "r.conf"
    path.write_text(RULES)
    res = WafEngine.load([path], detection_only=True).inspect(get("/?pw1=secret&a=evil1"))
    assert res.matched_ids == {11, 10, 99}
    assert res.would_block and not res.blocked


def test_skip_after_jumps_to_marker(engine: WafEngine) -> None:
    res = engine.inspect(get("/?x=bad", ("X-Skip", "1")))
    assert 23 not in res.matched_ids


def test_chain_needs_every_link(engine: WafEngine) -> None:
    body = b"v=chained"
    req = WafRequest("POST", "/", headers=(("Content-Type", "application/x-www-form-urlencoded"),), body=body)
    res = engine.inspect(req)
    assert 21 in res.matched_ids and res.tx["chained"] == "1"
    res = engine.inspect(WafRequest("POST", "/", body=b"v=other"))
    assert 21 not in res.matched_ids


def test_ctl_rule_remove_by_id(engine: WafEngine) -> None:
    assert 10 not in engine.inspect(get("/x.bak?a=evil1")).matched_ids


def test_exclusion_and_pm(engine: WafEngine) -> None:
    assert 23 not in engine.inspect(get("/?safe=bad")).matched_ids
    assert 23 in engine.inspect(get("/?other=WORSE")).matched_ids


def test_per_request_rule_removal(engine: WafEngine) -> None:
    assert 10 not in engine.inspect(get("/?a=evil1"), remove_rule_ids=[10]).matched_ids


def test_unsupported_constructs_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "r.conf"
    path.write_text(
        'SecRule REMOTE_ADDR "@geoLookup" "id:5,phase:1,pass,t:rot13,expirevar:ip.x=1"\n'
        'SecRule RESPONSE_BODY "@rx x" "id:6,phase:4,pass"\n'
    )
    engine = WafEngine.load([path])
    whats = [(u.rule_id, u.what) for u in engine.unsupported]
    assert any(rid == 5 and "geolookup" in w for rid, w in whats)
    assert any(rid == 5 and "rot13" in w for rid, w in whats)
    assert any(rid == 5 and "expirevar" in w for rid, w in whats)
    assert any(rid == 6 and "phase 4" in w for rid, w in whats)
