"""JSON-bomb limits and strict parsing: refused before or while parsing, always as ValidationError."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from garrison.validate import JsonLimits, ValidationError, parse_json

LIMITS = JsonLimits(max_depth=32, max_elements=1000, max_string_bytes=1024)


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        pytest.param(b"[" * 10_000, "max_depth", id="should refuse 10,000 unclosed brackets as too deep"),
        pytest.param(b"[" * 10_000 + b"]" * 10_000, "max_depth", id="should refuse 10,000 balanced brackets"),
        pytest.param(b'{"a":' * 40 + b"1" + b"}" * 40, "max_depth", id="should refuse 40 nested objects"),
        pytest.param(b"[" + b"1," * 5000 + b"1]", "max_elements", id="should refuse 5,001 array elements"),
        pytest.param(
            b'"' + b"a" * 2000 + b'"', "max_string_bytes", id="should refuse a string over the limit"
        ),
        pytest.param(b'{"a":1,"a":2}', "duplicate_key", id="should refuse duplicate keys"),
        pytest.param(b'{"x":{"a":1,"b":2,"a":3}}', "duplicate_key", id="should refuse nested duplicate keys"),
        pytest.param(b"\xff\xfe[]", "json", id="should refuse non-UTF-8"),
        pytest.param(b"\xef\xbb\xbf{}", "json", id="should refuse a byte order mark"),
        pytest.param(b"[NaN]", "json", id="should refuse NaN"),
        pytest.param(b"[1, 2", "json", id="should refuse truncated JSON"),
        pytest.param(b'["abc', "json", id="should refuse an unterminated string"),
        pytest.param(b"[" + b"9" * 5000 + b"]", "json", id="should refuse a 5,000-digit integer"),
    ],
)
def test_limits_refuse(body: bytes, rule: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_json(body, LIMITS)
    assert info.value.rule == rule


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 32 + b"]" * 32, id="should accept exactly the depth limit"),
        pytest.param(
            b'["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]', id="should ignore brackets in strings"
        ),
        pytest.param(
            b'["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\\"]', id="should handle escaped quotes"
        ),
        pytest.param(b'{"a":[1,2,{"b":null}],"c":"\xc3\xa9"}', id="should accept ordinary JSON"),
    ],
)
def test_limits_accept(body: bytes) -> None:
    assert parse_json(body, LIMITS) == json.loads(body)


def test_depth_over_limit_by_one_is_refused() -> None:
    with pytest.raises(ValidationError, match="nested deeper than 32"):
        parse_json(b"[" * 33 + b"]" * 33, LIMITS)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_validation_error(body: bytes) -> None:
    with contextlib.suppress(ValidationError):
        parse_json(body, LIMITS)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_valid_json_within_limits_parses_to_the_same_value(value: object) -> None:
    body = json.dumps(value).encode()
    assert parse_json(body, JsonLimits(max_depth=64, max_elements=10_000, max_string_bytes=10_000)) == value
