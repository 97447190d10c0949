"""Redaction in JSON bodies: named fields at any depth, arrays, patterns; non-JSON untouched."""

from __future__ import annotations

import json

import pytest

from garrison.dlp import Redactor

R = Redactor(fields=["password", "secret", "token"], patterns=[r"sk_live_[A-Za-z0-9]{8,}"])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {"password": "hunter2", "user": "ada"},
            {"password": "[REDACTED]", "user": "ada"},
            id="should redact a top-level field",
        ),
        pytest.param(
            {"a": {"b": [{"Token": {"x": 1}}]}},
            {"a": {"b": [{"Token": "[REDACTED]"}]}},
            id="should redact nested fields in arrays, case-insensitively, whatever the value",
        ),
        pytest.param([{"SECRET": 1}, {"ok": 2}], [{"SECRET": "[REDACTED]"}, {"ok": 2}], id="top-level array"),
        pytest.param(
            {"key": "use sk_live_abcdefgh12"}, {"key": "use [REDACTED]"}, id="should apply patterns"
        ),
        pytest.param(
            {"pan": "4111111111111111", "n": 5500000000000004},
            {"pan": "************1111", "n": "************0004"},
            id="should mask cards in strings and numbers",
        ),
    ],
)
def test_redacts(body: object, expected: object) -> None:
    out = R.redact(json.dumps(body).encode())
    assert out is not None and json.loads(out) == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"password=hunter2 4111111111111111", id="should leave non-JSON untouched"),
        pytest.param(b'{"user":"ada","id":4111111111111112}', id="should leave JSON with nothing to redact"),
        pytest.param(b'{"passwords_count": 3}', id="should match field names exactly"),
        pytest.param(b"[" * 100_000, id="should leave broken JSON untouched"),
    ],
)
def test_untouched(body: bytes) -> None:
    assert R.redact(body) is None


def test_escaped_key_is_still_found() -> None:
    out = R.redact(b'{"pass\\u0077ord":"x"}')
    assert out is not None and json.loads(out) == {"password": "[REDACTED]"}
