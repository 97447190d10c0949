from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garrison.waf.transforms import lookup


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("lowercase", "AbC\xc9", "abc\xc9"),
        ("urlDecode", "a%20b+c%zz", "a b c%zz"),
        ("urlDecodeUni", "%u0041%uff01%41", "A!A"),
        ("htmlEntityDecode", "&lt;&#x41;&#66;&quot", '<AB"'),
        ("jsDecode", r"\x41\u0042\n\101", "AB\nA"),
        ("cssDecode", r"\41 \000042", "AB"),
        ("cmdLine", 'C^a"t /etc,passwd ;x', "cat/etc passwd x"),
        ("compressWhitespace", "a \t\n b", "a b"),
        ("removeWhitespace", "a \t b", "ab"),
        ("removeNulls", "a\x00b", "ab"),
        ("replaceNulls", "a\x00b", "a b"),
        ("normalizePath", "/a/./b/../c//d", "/a/c/d"),
        ("normalizePathWin", "\\a\\..\\b", "/b"),
        ("replaceComments", "a/*x*/b/*open", "a b "),
        ("removeComments", "a/*x*/b -- tail", "ab "),
        ("removeCommentsChar", "a/*b*/--c#", "abc"),
        ("base64Decode", "aGVsbG8=", "hello"),
        ("hexDecode", "414243", "ABC"),
        ("utf8toUnicode", "\xc3\xa9", "%u00e9"),
        ("length", "abcd", "4"),
        ("trim", "  x  ", "x"),
        ("escapeSeqDecode", r"\x41\n", "A\n"),
    ],
)
def test_transformation(name: str, raw: str, expected: str) -> None:
    fn = lookup(name)
    assert fn is not None
    assert fn(raw) == expected


def test_unknown_transformation_is_none() -> None:
    assert lookup("rot13") is None


@given(st.text(alphabet="/.ab\\", max_size=30))
def test_normalize_path_is_idempotent(path: str) -> None:
    fn = lookup("normalizePath")
    assert fn is not None
    assert fn(fn(path)) == fn(path)
