"""Redaction inside JSON response bodies: card numbers, named fields, patterns. No I/O.

The body is parsed, walked and re-serialized only when a cheap byte-level prefilter says a change is
possible; an unchanged body is returned as None so the original bytes go out untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from garrison.dlp.cards import CARD_RUN_BYTES, is_card, mask_card, may_contain_card, redact_cards


class Redactor:
    """Compiled redaction rules of one route. ``redact(body)`` -> new bytes, or None if nothing changed."""

    __slots__ = ("cards", "field_probe", "fields", "patterns", "replacement")

    def __init__(
        self,
        *,
        cards: bool = True,
        fields: Iterable[str] = (),
        patterns: Iterable[str] = (),
        replacement: str = "[REDACTED]",
    ) -> None:
        self.cards = cards
        self.fields = frozenset(f.lower() for f in fields)
        self.patterns = tuple(re.compile(p) for p in patterns)
        self.replacement = replacement
        # A key appears in the raw body as "name" (case-insensitive); escaped keys defeat the probe,
        # so the probe also fires on any backslash in a body (rare in API responses).
        names = "|".join(re.escape(f) for f in sorted(self.fields))
        self.field_probe = re.compile(f'"(?:{names})"|\\\\'.encode(), re.IGNORECASE) if names else None

    @property
    def active(self) -> bool:
        return self.cards or bool(self.fields) or bool(self.patterns)

    def might_change(self, body: bytes) -> bool:
        if self.patterns:
            return True
        if self.field_probe is not None and self.field_probe.search(body):
            return True
        return self.cards and may_contain_card(body) and CARD_RUN_BYTES.search(body) is not None

    def redact(self, body: bytes) -> bytes | None:
        """Redact a JSON body. None: not JSON, or nothing to redact (send the original bytes)."""
        if not self.might_change(body):
            return None
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            return None  # not JSON (or absurdly deep): untouched, as promised for non-JSON bodies
        try:
            new, count = self.redact_value(value)
        except RecursionError:
            return None
        if not count:
            return None
        return json.dumps(new, ensure_ascii=False, separators=(",", ":")).encode()

    def redact_value(self, value: Any) -> tuple[Any, int]:
        """A redacted copy of a JSON value and the number of redactions (0: ``value`` itself)."""
        if isinstance(value, str):
            return self._string(value)
        if isinstance(value, dict):
            count = 0
            out: dict[str, Any] = {}
            for k, v in value.items():
                if k.lower() in self.fields:
                    out[k] = self.replacement
                    count += 1
                else:
                    out[k], n = self.redact_value(v)
                    count += n
            return (out, count) if count else (value, 0)
        if isinstance(value, list):
            count = 0
            items = []
            for v in value:
                nv, n = self.redact_value(v)
                items.append(nv)
                count += n
            return (items, count) if count else (value, 0)
        if self.cards and isinstance(value, int) and not isinstance(value, bool) and value >= 10**12:
            s = str(value)
            if is_card(s):
                return mask_card(s), 1
        return value, 0

    def _string(self, s: str) -> tuple[str, int]:
        count = 0
        if self.cards:
            s, count = redact_cards(s)
        for rx in self.patterns:
            s, n = rx.subn(self.replacement, s)
            count += n
        return s, count

    def __repr__(self) -> str:
        return f"<Redactor cards={self.cards} fields={sorted(self.fields)} patterns={len(self.patterns)}>"


__all__ = ["Redactor"]
