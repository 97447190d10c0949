"""Batched transformations must equal the plain per-value loop, value for value, on any input.

The batch joins values with a separator and runs one call per step; these tests aim at the ways that
could go wrong: a value holding the separator, a step decoding into it (``%01``), escapes at a
value's edge, runs of whitespace across values, and empty values. The fast paths added to single
transformations (cmdLine, lowercase, normalizePath, url decoding) are checked against reference
implementations of the original code.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from garrison.waf import WafEngine, WafRequest
from garrison.waf.batch import SEP, SEP_SAFE, separator, transform_list, transform_values
from garrison.waf.transforms import TRANSFORMS, cmd_line, lowercase, normalize_path, url_decode_uni

# Characters that stress the transformations: escapes, separators, whitespace, case, high bytes.
ALPHABET = [*"aZ09%+&#;x\\/.'\"^,( \t\n\x00\x01\x02\x1f\xa0\xc3\xa9uU*-<!>", "%01", "%u0041", "&#1;"]
PATHS = [*ALPHABET, "  ", " /", " (", "ÀÉ", "..", "./"]


def _plain(names: tuple[str, ...], values: list[str]) -> list[str]:
    out = []
    for v in values:
        for n in names:
            v = TRANSFORMS[n](v)
        out.append(v)
    return out


def _values(rnd: random.Random, n: int) -> list[str]:
    return ["".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 8))) for _ in range(n)]


def test_every_single_step_matches_the_per_value_loop() -> None:
    rnd = random.Random(11)
    for name in TRANSFORMS:
        for _ in range(300):
            values = _values(rnd, rnd.randint(1, 6))
            assert transform_list((name,), (TRANSFORMS[name],), values) == _plain((name,), values), name


def test_random_chains_match_the_per_value_loop() -> None:
    rnd = random.Random(5)
    names_all = sorted(TRANSFORMS)
    for _ in range(3000):
        names = tuple(rnd.choice(names_all) for _ in range(rnd.randint(1, 5)))
        values = _values(rnd, rnd.randint(1, 8))
        got = transform_list(names, tuple(TRANSFORMS[n] for n in names), values)
        assert got == _plain(names, values), (names, values)


def test_a_value_decoding_into_the_separator_falls_back_exactly() -> None:
    values = ["a%01b", "c", "%01", "D", "e", "F"]  # \x01 is the first separator candidate
    names = ("urldecodeuni", "lowercase")
    assert separator(values) == "\x01"
    got = transform_list(names, tuple(TRANSFORMS[n] for n in names), values)
    assert got == ["a\x01b", "c", "\x01", "d", "e", "f"]


def test_separator_avoids_every_character_present() -> None:
    assert separator(["ab", "c"]) == "\x01"
    assert separator(["\x01", "\x02"]) == "\x03"
    crowded = ["".join(map(chr, range(32)))]
    assert separator(crowded) == SEP  # all control characters taken: the non-latin-1 one
    values = [*crowded, "A%41", "b", "c", "d", "e"]
    got = transform_list(("urldecode", "lowercase"), (TRANSFORMS["urldecode"], lowercase), values)
    assert got == [crowded[0], "aa", "b", "c", "d", "e"]


def test_sep_safe_steps_are_homomorphic_over_every_separator_candidate() -> None:
    rnd = random.Random(3)
    for name in SEP_SAFE:
        fn = TRANSFORMS[name]
        for sep in ["\x01", "\x08", "\x0e", "\x1f", SEP]:
            for _ in range(200):
                a, b = _values(rnd, 2)
                if sep in a + b:
                    continue
                assert fn(a + sep + b) == fn(a) + sep + fn(b), (name, repr(sep), a, b)


def test_transform_values_caches_per_chain() -> None:
    cache: dict[tuple[str, ...], dict[str, str]] = {}
    names = ("urldecodeuni", "lowercase")
    fns = tuple(TRANSFORMS[n] for n in names)
    assert transform_values(cache, names, fns, ["A%42", "x", "A%42"]) == ["ab", "x", "ab"]
    assert cache[names] == {"A%42": "ab", "x": "x"}
    cache[names]["x"] = "cached"  # a second call reads the cache, not the functions
    assert transform_values(cache, names, fns, ["x"]) == ["cached"]
    assert transform_values(cache, (), (), ["Q"]) == ["Q"]


# The original implementations, before the fast paths.
def _cmd_line_ref(s: str) -> str:
    s = re.sub(r"[ ,;\t\n\r\f\v]+", " ", s.translate(str.maketrans("", "", "\\\"'^")))
    s = re.sub(r" +(?=[/(])", "", s)
    return s.translate({c: c + 32 for c in range(65, 91)})


def _normalize_path_ref(s: str) -> str:
    if "/" not in s and "." not in s:
        return s
    absolute = s.startswith("/")
    trailing = s.endswith("/") or s.endswith("/.") or s.endswith("/..")
    out: list[str] = []
    for seg in s.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not absolute:
                out.append("..")
            continue
        out.append(seg)
    result = ("/" if absolute else "") + "/".join(out)
    return result + "/" if trailing and out else result


def test_fast_paths_equal_the_original_transformations() -> None:
    rnd = random.Random(9)
    for _ in range(5000):
        s = "".join(rnd.choice(PATHS) for _ in range(rnd.randint(0, 9)))
        assert cmd_line(s) == _cmd_line_ref(s), s
        assert lowercase(s) == s.translate({c: c + 32 for c in range(65, 91)}), s
        assert normalize_path(s) == _normalize_path_ref(s), s
    assert url_decode_uni("a+b") == "a b" and url_decode_uni("%41+") == "A "
    assert lowercase("\u0100ABC") == "\u0100abc"  # not latin-1: the per-char map, ASCII only


RULES = r"""
SecRule ARGS "@rx evil\(" "id:10,phase:2,pass,t:none,t:urlDecodeUni,t:base64Decode,multiMatch,msg:'multi'"
SecRule ARGS "@rx ^a b$" "id:11,phase:2,pass,t:none,t:urlDecodeUni,t:cmdLine,msg:'cmd'"
SecRule REMOTE_ADDR "@ipMatch 10.0.0.0/8" "id:12,phase:1,pass,msg:'ip'"
"""


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GARRISON_WAF_CACHE", str(tmp_path / "hs-cache"))


def test_multimatch_rules_are_prefiltered_without_losing_matches(tmp_path: Path) -> None:
    path = tmp_path / "rules.conf"
    path.write_text(RULES)
    fast, plain = WafEngine.load([path]), WafEngine.load([path], prefilter=False)
    assert fast.prefilter_stats[2] == 2  # the multiMatch rule is now prefiltered too
    cases = [
        ("/?x=ZXZpbCg%3D", "10.1.2.3"),  # base64 of "evil(": only the last step matches
        ("/?x=evil%28", "192.0.2.1"),  # the url-decoded step matches
        ("/?x=a%3Bb", "10.0.0.1"),  # cmdLine turns ";" into a space
        ("/?x=harmless", "10.9.9.9"),
    ]
    for uri, addr in cases:
        req = WafRequest("GET", uri, headers=(("Host", "x"),), remote_addr=addr)
        assert fast.inspect(req).matched_ids == plain.inspect(req).matched_ids, uri
    ids = [fast.inspect(WafRequest("GET", u, remote_addr=a)).matched_ids for u, a in cases]
    assert ids == [{10, 12}, {10}, {11, 12}, {12}]
