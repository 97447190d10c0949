"""Payment card numbers: 13-19 digits, single space/dash separators, Luhn-valid only. No I/O."""

from __future__ import annotations

import re
from typing import Final

# A run of 13-19 digits, each optionally followed by one separator, not touching other digits.
# A run that goes on through a separator ("1234 5678 ... 20+ digits") is not a card number either.
_RUN: Final = r"(?<![0-9])(?<![0-9][ -])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])(?![ -][0-9])"
CARD_RUN: Final = re.compile(_RUN)
CARD_RUN_BYTES: Final = re.compile(_RUN.encode())
# Prefilter: digits and separators become "0", everything else "x"; a card needs 13 "0"s in a row.
_HINT_TABLE: Final = bytes(48 if (48 <= b <= 57 or b in b" -") else 120 for b in range(256))
_HINT_RUN: Final = b"0" * 13
_DOUBLED: Final = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
_SEPARATORS: Final = str.maketrans("", "", " -")


def may_contain_card(data: bytes) -> bool:
    """Cheap, C-speed test: False means ``data`` certainly holds no card number."""
    return _HINT_RUN in data.translate(_HINT_TABLE)


def luhn_valid(digits: str) -> bool:
    """ISO/IEC 7812-1 Annex B check digit over an all-digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += _DOUBLED[d] if i & 1 else d
    return total % 10 == 0


def is_card(candidate: str) -> bool:
    digits = candidate.translate(_SEPARATORS)
    return 13 <= len(digits) <= 19 and digits.isdigit() and luhn_valid(digits)


def mask_card(candidate: str) -> str:
    """Every digit but the last four becomes ``*``; separators are kept (``**** **** **** 1111``)."""
    seen = 0
    total = sum(c.isdigit() for c in candidate)
    out = []
    for c in candidate:
        if c.isdigit():
            seen += 1
            out.append(c if seen > total - 4 else "*")
        else:
            out.append(c)
    return "".join(out)


def redact_cards(text: str) -> tuple[str, int]:
    """``text`` with every Luhn-valid card number masked, and how many were masked."""
    count = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal count
        s = m.group()
        if is_card(s):
            count += 1
            return mask_card(s)
        return s

    return CARD_RUN.sub(sub, text), count


__all__ = [
    "CARD_RUN",
    "CARD_RUN_BYTES",
    "is_card",
    "luhn_valid",
    "mask_card",
    "may_contain_card",
    "redact_cards",
]
