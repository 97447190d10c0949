"""The engine's shortcuts (joined prefilter scan, per-request value cache, identity transforms, disk
cache of hyperscan databases) must never change a verdict: each is checked against the plain path."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from garrison.waf import WafEngine, WafRequest
from garrison.waf.transforms import IDENTITY_UNLESS, TRANSFORMS, changers

RULES = r"""
SecRule ARGS "@rx ^abc$" "id:1,phase:2,pass,msg:'line'"
SecRule ARGS "@rx \Aabc" "id:2,phase:2,pass,msg:'buffer start'"
SecRule ARGS "@rx \bfoo\b" "id:3,phase:2,pass,t:none,t:lowercase,msg:'word'"
SecRule ARGS "@pm Needle" "id:4,phase:2,pass,t:none,t:urlDecodeUni,msg:'pm'"
SecRule ARGS "@rx x$" "id:5,phase:1,pass,msg:'phase 1 args'"
SecRule ARGS "@rx x$" "id:6,phase:2,pass,msg:'phase 2 args'"
SecRule ARGS "@rx ^$" "id:7,phase:2,pass,msg:'empty'"
SecRule ARGS "@validateByteRange 32-126" "id:8,phase:2,pass,msg:'bytes'"
SecRule ARGS "@streq abc" "id:9,phase:2,pass,t:none,t:lowercase,t:urlDecodeUni,multiMatch,msg:'multi'"
"""

REQUESTS = [
    "/?a=zzz&b=abc",
    "/?a=zz&b=x%20abc",
    "/?a=FOO&b=afoo",
    "/?q=foo-bar",
    "/?a=1&b=hay+NEEDLE",
    "/?a=nee&b=dle",
    "/?a=&b=1",
    "/?a=%C3%A9",
    "/?a=ABC",
    "/?a=%41bc",
]


def _engines(tmp_path: Path) -> tuple[WafEngine, WafEngine]:
    path = tmp_path / "rules.conf"
    path.write_text(RULES)
    return WafEngine.load([path]), WafEngine.load([path], prefilter=False)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hs-cache"
    monkeypatch.setenv("GARRISON_WAF_CACHE", str(cache))
    return cache


def _verdict(engine: WafEngine, uri: str, body: bytes = b"") -> tuple[frozenset[int], int, bool]:
    headers: tuple[tuple[str, str], ...] = (("Host", "x"),)
    if body:
        headers = (*headers, ("Content-Type", "application/x-www-form-urlencoded"))
    res = engine.inspect(WafRequest("POST" if body else "GET", uri, headers=headers, body=body))
    return res.matched_ids, res.anomaly_score, res.would_block


def test_joined_prefilter_scan_finds_what_each_value_would(tmp_path: Path) -> None:
    fast, plain = _engines(tmp_path)
    for uri in REQUESTS:
        assert _verdict(fast, uri) == _verdict(plain, uri), uri
    assert _verdict(fast, "/?a=zzz&b=abc")[0] == {1, 2, 9}  # ^/\A on the second value
    assert 3 in _verdict(fast, "/?a=FOO")[0]
    assert 4 in _verdict(fast, "/?a=1&b=hay+NEEDLE")[0]
    assert 4 not in _verdict(fast, "/?a=nee&b=dle")[0]  # no phrase across two values
    assert 7 in _verdict(fast, "/?a=&b=1")[0]
    assert 9 in _verdict(fast, "/?a=%41bc")[0]


def test_value_cache_sees_body_args_in_phase_2(tmp_path: Path) -> None:
    fast, plain = _engines(tmp_path)
    ids = _verdict(fast, "/?a=1", b"b=xx")[0]
    assert 6 in ids and 5 not in ids  # phase 1 saw only the query; phase 2 the body too
    assert _verdict(fast, "/?a=1", b"b=xx") == _verdict(plain, "/?a=1", b"b=xx")


def test_transform_shortcut_is_identity_without_trigger_chars() -> None:
    rnd = random.Random(7)
    for name, triggers in IDENTITY_UNLESS.items():
        fn = TRANSFORMS[name]
        alphabet = [chr(c) for c in range(256) if chr(c) not in triggers]
        for _ in range(2000):
            s = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 10)))
            assert fn(s) == s, (name, s)
    pat = changers(("urldecodeuni", "lowercase"))
    assert pat is not None and pat.search("abc") is None and pat.search("aBc") is not None
    assert changers(("base64decode",)) is None


def test_databases_are_cached_and_bad_entries_recompiled(tmp_path: Path, cache_dir: Path) -> None:
    first = _engines(tmp_path)[0]
    entries = sorted(cache_dir.iterdir())
    assert any(p.suffix == ".hsdb" for p in entries)
    warm = _engines(tmp_path)[0]  # loaded from the cache
    for uri in REQUESTS:
        assert _verdict(first, uri) == _verdict(warm, uri), uri
    for p in entries:
        p.write_bytes(b"garbage")
    second = _engines(tmp_path)[0]
    for uri in REQUESTS:
        assert _verdict(first, uri) == _verdict(second, uri), uri
    assert all(p.read_bytes() != b"garbage" for p in entries)  # rewritten


def test_cache_dir_writable_by_others_is_ignored(tmp_path: Path, cache_dir: Path) -> None:
    cache_dir.mkdir(mode=0o700)
    os.chmod(cache_dir, 0o777)  # noqa: S103 - the point of the test
    _engines(tmp_path)
    assert list(cache_dir.iterdir()) == []
