"""Card numbers are masked only when 13-19 digits and Luhn-valid; the last four stay."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from garrison.dlp import is_card, luhn_valid, redact_cards


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("4111111111111111", "************1111", id="should mask a Visa test PAN"),
        pytest.param("4111 1111 1111 1111", "**** **** **** 1111", id="should keep space separators"),
        pytest.param("5500-0000-0000-0004", "****-****-****-0004", id="should mask a Mastercard test PAN"),
        pytest.param("378282246310005", "***********0005", id="should mask a 15-digit Amex"),
        pytest.param("4222222222222", "*********2222", id="should mask a 13-digit Visa"),
        pytest.param("6011000990139424", "************9424", id="should mask a Discover"),
        pytest.param("card: 4111111111111111.", "card: ************1111.", id="should mask inside text"),
        pytest.param("4111111111111112", "4111111111111112", id="should leave a Luhn-invalid near miss"),
        pytest.param("411111111111", "411111111111", id="should leave 12 digits"),
        pytest.param("41111111111111111111", "41111111111111111111", id="should leave 20 digits"),
        pytest.param("4111  1111 1111 1111", "4111  1111 1111 1111", id="should leave double separators"),
        pytest.param(
            "1234 5678 9012 3456 7890 1234", "1234 5678 9012 3456 7890 1234", id="should leave a long run"
        ),
        pytest.param("order 2024000000000001", "order 2024000000000001", id="should leave non-Luhn ids"),
    ],
)
def test_redact_cards(text: str, expected: str) -> None:
    assert redact_cards(text)[0] == expected


def test_luhn() -> None:
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert is_card("4111-1111-1111-1111") and not is_card("0000")


def _luhn_runs(text: str) -> int:
    return sum(
        1
        for m in re.finditer(r"[0-9]{13,19}", text.replace(" ", "").replace("-", ""))
        if luhn_valid(m.group())
    )


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789 -ab*", max_size=80))
def test_redaction_never_increases_luhn_valid_runs(text: str) -> None:
    out, count = redact_cards(text)
    assert _luhn_runs(out) <= _luhn_runs(text)
    assert len(out) == len(text) and (count > 0) == (out != text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789 -ab", max_size=60))
def test_prefilter_never_hides_a_card(text: str) -> None:
    from garrison.dlp.cards import CARD_RUN, may_contain_card

    if any(is_card(m.group()) for m in CARD_RUN.finditer(text)):
        assert may_contain_card(text.encode())
