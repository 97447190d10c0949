"""Translate the PCRE dialect of SecLang @rx patterns into Python ``re``; refuse what cannot translate.

libmodsecurity 3 compiles @rx with PCRE_DOTALL | PCRE_MULTILINE and without UTF mode, so patterns
see bytes: we match latin-1 text (one char per byte) with re.ASCII | re.DOTALL | re.MULTILINE.
No I/O here; nothing is compiled per request.
"""

from __future__ import annotations

import itertools
import re
import warnings

RX_FLAGS = re.ASCII | re.DOTALL | re.MULTILINE


class Untranslatable(ValueError):
    """The pattern uses a PCRE construct that Python ``re`` cannot express (message says which)."""


# POSIX bracket classes (PCRE, inside [...]), ASCII only.
_POSIX = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": r" \t\n\r\f\v",
    "blank": r" \t",
    "punct": r"!-/:-@\[-`{-~",
    "xdigit": "0-9A-Fa-f",
    "word": "a-zA-Z0-9_",
    "cntrl": r"\x00-\x1f\x7f",
    "print": r"\x20-\x7e",
    "graph": r"\x21-\x7e",
}

# PCRE escapes with a different meaning (or none) in Python.
_ESCAPES = {
    "z": r"\Z",
    "Z": r"(?=\n?\Z)",
    "h": r"[ \t\xa0]",
    "H": r"[^ \t\xa0]",
    "v": r"[\n\x0b\f\r\x85]",
    "V": r"[^\n\x0b\f\r\x85]",
    "R": r"(?:\r\n|[\n\x0b\f\r\x85])",
    "e": r"\x1b",
}
_CLASS_ESCAPES = {"h": r" \t\xa0", "v": r"\n\x0b\f\r\x85", "e": r"\x1b"}
_UNSUPPORTED_LETTERS = set("CXKGNpPgoc") | {"Q", "E"}


def _hex_escape(pattern: str, i: int) -> tuple[str, int]:
    r"""``\x{HHHH}`` or ``\xH``/``\xHH`` starting at ``pattern[i] == 'x'``; returns (python, next i)."""
    if i + 1 < len(pattern) and pattern[i + 1] == "{":
        end = pattern.find("}", i + 2)
        if end < 0:
            raise Untranslatable("unterminated \\x{...}")
        value = int(pattern[i + 2 : end] or "0", 16)
        return (f"\\x{value:02x}" if value < 0x100 else f"\\u{value:04x}"), end + 1
    digits = ""
    j = i + 1
    while j < len(pattern) and len(digits) < 2 and pattern[j] in "0123456789abcdefABCDEF":
        digits += pattern[j]
        j += 1
    return f"\\x{int(digits or '0', 16):02x}", j


def translate(pattern: str) -> str:
    """Return a Python ``re`` pattern equivalent to the PCRE ``pattern`` or raise Untranslatable."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    in_class = False
    class_start = 0
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise Untranslatable("trailing backslash")
            d = pattern[i + 1]
            if d == "x":
                text, i = _hex_escape(pattern, i + 1)
                out.append(text)
                continue
            if d == "Q":
                end = pattern.find("\\E", i + 2)
                literal = pattern[i + 2 : end if end >= 0 else n]
                out.append(re.escape(literal))
                i = (end + 2) if end >= 0 else n
                continue
            if in_class and d in _CLASS_ESCAPES:
                out.append(_CLASS_ESCAPES[d])
            elif in_class and d in "HVR":
                raise Untranslatable(f"\\{d} inside a character class")
            elif not in_class and d in _ESCAPES:
                out.append(_ESCAPES[d])
            elif d == "k" and i + 2 < n and pattern[i + 2] in "<{'":
                close = {"<": ">", "{": "}", "'": "'"}[pattern[i + 2]]
                end = pattern.find(close, i + 3)
                out.append(f"(?P={pattern[i + 3 : end]})")
                i = end + 1
                continue
            elif d in _UNSUPPORTED_LETTERS or (d.isalpha() and d not in "dDsSwWbBAntrfa"):
                raise Untranslatable(f"escape \\{d}")
            else:
                out.append(c + d)
            i += 2
            continue
        if in_class:
            if c == "[" and pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                name = pattern[i + 2 : end] if end > 0 else ""
                negated = name.startswith("^")
                if negated or name not in _POSIX:
                    raise Untranslatable(f"POSIX class [:{name}:]")
                out.append(_POSIX[name])
                i = end + 2
                continue
            if c == "]" and i > class_start:
                in_class = False
                out.append(c)
            elif c in "[&~|":
                out.append("\\" + c)  # literal in PCRE; Python warns about nested-set syntax
            else:
                out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            class_start = i
            if i < n and pattern[i] == "]":  # a leading ']' is literal in PCRE
                out.append("\\]")
                i += 1
            continue
        if c == "(" and pattern.startswith("(?", i):
            rest = pattern[i + 2 : i + 4]
            if rest.startswith("<") and rest[1:2] not in ("=", "!"):
                out.append("(?P<")
                i += 3
                continue
            if rest.startswith("|") or rest.startswith("R") or rest[:1].isdigit() or rest.startswith("&"):
                raise Untranslatable(f"group (?{rest[:1]}")
        if c == "(" and pattern.startswith("(*", i):
            raise Untranslatable("PCRE verb (*...)")
        out.append(c)
        i += 1
    if in_class:
        raise Untranslatable("unterminated character class")
    return "".join(out)


def compile_rx(pattern: str) -> re.Pattern[str]:
    """Translate and compile; raises Untranslatable with the reason when it cannot."""
    translated = translate(pattern)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return re.compile(translated, RX_FLAGS)
    except (re.error, FutureWarning) as exc:
        if "global flags not at the start" in str(exc):
            return _hoist_global_flags(translated)
        if "look-behind requires fixed-width" in str(exc):
            try:
                return re.compile(_split_lookbehinds(translated), RX_FLAGS)
            except re.error as exc2:
                raise Untranslatable(f"python re: {exc2}") from exc2
        raise Untranslatable(f"python re: {exc}") from exc


def _group_end(pattern: str, start: int) -> tuple[int, list[int]]:
    """Index of the ')' closing the group opened at ``start`` and its top-level '|' positions."""
    depth = 0
    bars: list[int] = []
    i = start
    in_class = False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if pattern.startswith("[^]", i) or pattern.startswith("[]", i):
                i += 2 if pattern[i + 1] == "]" else 3
                continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i, bars
        elif c == "|" and depth == 1:
            bars.append(i)
        i += 1
    raise Untranslatable("unbalanced parentheses")


def _split_lookbehinds(pattern: str) -> str:
    """PCRE allows ``(?<!a|bc)`` with alternatives of different fixed widths; Python needs one width each.

    ``(?<!a|bc)`` becomes ``(?<!a)(?<!bc)`` and ``(?<=a|bc)`` becomes ``(?:(?<=a)|(?<=bc))``.
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith(("(?<!", "(?<="), i):
            end, bars = _group_end(pattern, i)
            kind = pattern[i + 3]
            cuts = [i + 3, *bars, end]
            alts = [_split_lookbehinds(pattern[a + 1 : b]) for a, b in itertools.pairwise(cuts)]
            if kind == "!":
                out.append("".join(f"(?<!{a})" for a in alts))
            else:
                out.append("(?:" + "|".join(f"(?<={a})" for a in alts) + ")")
            i = end + 1
            continue
        if pattern[i] == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        out.append(pattern[i])
        i += 1
    return "".join(out)


_GLOBAL_FLAG = re.compile(r"\(\?([imsx]+)\)")


def _hoist_global_flags(translated: str) -> re.Pattern[str]:
    """PCRE applies a mid-pattern ``(?i)`` to the rest of its group; hoist it when it is top-level only."""
    flags = set("".join(_GLOBAL_FLAG.findall(translated)))
    if flags - {"i", "s"}:
        raise Untranslatable("mid-pattern inline flags")
    # Only safe when the flag makes no difference before it: accept 'i' only if the prefix has no letters.
    first = _GLOBAL_FLAG.search(translated)
    assert first is not None
    if any(ch.isalpha() for ch in re.sub(r"\\.", "", translated[: first.start()])):
        raise Untranslatable("mid-pattern (?i) after case-sensitive text")
    body = _GLOBAL_FLAG.sub("", translated)
    try:
        return re.compile(f"(?{''.join(sorted(flags))}){body}", RX_FLAGS)
    except re.error as exc:
        raise Untranslatable(f"python re: {exc}") from exc


__all__ = ["RX_FLAGS", "Untranslatable", "compile_rx", "translate"]
