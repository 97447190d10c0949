"""JSON-bomb limits and strict parsing of a request body (RFC 8259). Bytes in, Python values out; no I/O.

Python's ``json`` has no depth limit of its own (only the interpreter's recursion limit), so the body
is measured before ``json.loads`` sees it, at C speed, with no per-byte Python loop:

1. fast bounds first: a body of n bytes holds at most (n + 1) // 2 values, no string longer than n,
   and no deeper nesting than its count of ``[``/``{`` bytes; when those bounds are within the limits
   (most small bodies) nothing more is done;
2. otherwise escaped backslashes and quotes are blanked (length kept), the body is split on ``"``: odd
   parts are string contents (the longest is measured), even parts the structure outside strings;
3. the structure is reduced to ``[]{},`` by ``bytes.translate``; elements = commas + containers + 1;
4. depth: ``{}`` are read as ``[]`` and innermost ``[]`` pairs deleted with ``bytes.replace``, one
   nesting level per pass, for at most ``max_depth`` passes; anything left means "too deep" (or, if a
   pass deletes nothing, unbalanced: malformed).

Then ``json.loads`` with an ``object_pairs_hook`` that refuses duplicate keys (RFC 8259 §4: names
"SHOULD be unique"; two parsers disagreeing on which one wins is a smuggling vector) and a
``parse_constant`` that refuses ``NaN``/``Infinity`` (not JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from garrison.validate.errors import ValidationError, excerpt

_BRACKETS_ONLY: Final = bytes.maketrans(b"{}", b"[]")
_NOT_SKELETON: Final = bytes(b for b in range(256) if b not in b"[]{},")


@dataclass(frozen=True, slots=True)
class JsonLimits:
    """Limits on one JSON document. ``max_elements`` counts values (containers and scalars)."""

    max_depth: int = 32
    max_elements: int = 10_000
    max_string_bytes: int = 65_536  # as sent, escapes included


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _Duplicate(k)
            seen.add(k)
    return d


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def check_limits(body: bytes, limits: JsonLimits) -> None:
    """Raise ``ValidationError`` if ``body`` exceeds a limit. Does not check that it is well-formed."""
    n = len(body)
    need_depth = body.count(b"[") + body.count(b"{") > limits.max_depth
    need_elements = (n + 1) // 2 > limits.max_elements
    if not (need_depth or need_elements or n > limits.max_string_bytes):
        return
    if b"\\" in body:
        body = body.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    parts = body.split(b'"')
    if len(parts) % 2 == 0:
        _malformed("unterminated string")
    if n > limits.max_string_bytes and max(map(len, parts[1::2]), default=0) > limits.max_string_bytes:
        raise ValidationError(
            f"$: a string is longer than {limits.max_string_bytes} bytes", rule="max_string_bytes"
        )
    skeleton = b"".join(parts[::2]).translate(None, _NOT_SKELETON)
    if need_depth:
        brackets = skeleton.translate(_BRACKETS_ONLY, b",")
        for _ in range(limits.max_depth):
            if not brackets:
                break
            shorter = brackets.replace(b"[]", b"")
            if len(shorter) == len(brackets):
                if len(brackets) - len(brackets.lstrip(b"[")) <= limits.max_depth:
                    _malformed("unbalanced brackets")
                break  # e.g. 10,000 "[" and nothing else: too deep before it is malformed
            brackets = shorter
        if brackets:  # unbalanced input that is also deeper than allowed is reported as too deep
            raise ValidationError(f"$: nested deeper than {limits.max_depth} levels", rule="max_depth")
    if need_elements:
        elements = len(skeleton) - skeleton.count(b"]") - skeleton.count(b"}") + 1
        if elements > limits.max_elements:
            raise ValidationError(f"$: more than {limits.max_elements} elements", rule="max_elements")


def _malformed(what: str) -> NoReturn:
    raise ValidationError(f"$: body is not valid JSON ({what})", rule="json")


def parse_json(body: bytes, limits: JsonLimits) -> Any:
    """Check ``limits``, then parse strictly (UTF-8, no duplicate keys, no NaN). Raises ValidationError."""
    check_limits(body, limits)
    try:
        text = body.decode("utf-8")  # RFC 8259 §8.1: JSON exchanged between systems is UTF-8
    except UnicodeDecodeError:
        _malformed("not UTF-8")
    if text[:1] == "\ufeff":
        _malformed("byte order mark")  # RFC 8259 §8.1: MUST NOT add a BOM
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _Duplicate as dup:
        raise ValidationError(
            f"$: duplicate key '{excerpt(dup.key)}'", rule="duplicate_key", path="$"
        ) from None
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"$: body is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})", rule="json"
        ) from None
    except (ValueError, RecursionError):  # huge integer literal (int max digits), NaN; depth is checked
        _malformed("unsupported value")


__all__ = ["JsonLimits", "check_limits", "parse_json"]
