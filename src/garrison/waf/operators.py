"""SecLang operators (``@rx``, ``@pm``, ...) compiled once at load into match functions.

A match returns the capture tuple (``TX.0`` first) or None. Operator arguments that contain macros
(``%{tx.allowed_methods}``) are expanded per request and the compiled form is cached. No I/O after load.
"""

from __future__ import annotations

import contextlib
import ipaddress
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from garrison.waf import libinj
from garrison.waf.pcre import Untranslatable, compile_rx

Captures = tuple[str, ...]
Expand = Callable[[str], str]
MatchFn = Callable[[str], Captures | None]

_hs: Any
try:
    import hyperscan as _hs  # type: ignore[import-untyped,unused-ignore,no-redef]
except ImportError:  # pragma: no cover - hyperscan is a declared dependency
    _hs = None


class UnsupportedOperator(ValueError):
    """The operator (or its argument) cannot be executed by this engine; the message says why."""


_ATOI = re.compile(r"\s*([+-]?\d+)")


def _num(value: str) -> int:
    """C ``atoi``: leading optional sign and digits, anything else is 0 (as ModSecurity compares)."""
    if value.isdigit() and value.isascii():
        return int(value)
    m = _ATOI.match(value)
    return int(m.group(1)) if m else 0


class PhraseSet:
    """Case-insensitive multi-phrase search (Aho-Corasick in ModSecurity; hyperscan literals here)."""

    def __init__(self, phrases: list[str]) -> None:
        self.phrases = [p for p in dict.fromkeys(phrases) if p]
        self._db: Any = None
        if _hs is not None and self.phrases:
            db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            flags = _hs.HS_FLAG_CASELESS | _hs.HS_FLAG_SOM_LEFTMOST
            exprs = [re.escape(p).encode("latin-1") for p in self.phrases]
            db.compile(
                expressions=exprs,
                ids=list(range(len(exprs))),
                elements=len(exprs),
                flags=[flags] * len(exprs),
            )
            self._db = db
        else:
            alternation = "|".join(re.escape(p) for p in sorted(self.phrases, key=len, reverse=True))
            self._rx = re.compile(alternation or "(?!)", re.IGNORECASE | re.ASCII)

    def search(self, value: str) -> str | None:
        if self._db is None:
            m = self._rx.search(value)
            return m.group(0) if m else None
        found: list[tuple[int, int]] = []

        def on_match(_id: int, start: int, end: int, _flags: int, _ctx: object) -> bool:
            found.append((start, end))
            return True  # stop at the first match

        # on_match stops the scan at the first hit, which hyperscan reports as ScanTerminated
        with contextlib.suppress(_hs.ScanTerminated):
            self._db.scan(value.encode("latin-1", "replace"), match_event_handler=on_match)
        if not found:
            return None
        start, end = found[0]
        return value[start:end]


def _read_phrases(arg: str, base: Path) -> list[str]:
    phrases: list[str] = []
    for name in arg.split():
        path = Path(name) if Path(name).is_absolute() else base / name
        if not path.is_file():
            raise UnsupportedOperator(f"data file not found: {name}")
        for line in path.read_text("latin-1").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                phrases.append(line)
    return phrases


def _byte_ranges(arg: str) -> frozenset[int]:
    allowed: set[int] = set()
    for part in arg.replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        allowed.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(allowed)


_BAD_URL_ENC = re.compile(r"%(?![0-9a-fA-F]{2})")


_NUMERIC: dict[str, Callable[[int, int], bool]] = {
    "eq": operator.eq,
    "ge": operator.ge,
    "gt": operator.gt,
    "lt": operator.lt,
    "le": operator.le,
}


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _build(name: str, arg: str, base: Path) -> MatchFn:
    """Compile operator ``name`` with a macro-free argument into a match function."""
    if name == "rx":
        try:
            rx = compile_rx(arg)
        except Untranslatable as exc:
            raise UnsupportedOperator(f"@rx pattern: {exc}") from exc
        groups = min(rx.groups, 9)

        def rx_match(v: str) -> Captures | None:
            m = rx.search(v)
            if m is None:
                return None
            return (m.group(0), *(g or "" for g in m.groups()[:groups]))

        return rx_match
    if name in ("pm", "pmfromfile", "pmf"):
        phrases = arg.split() if name == "pm" else _read_phrases(arg, base)
        ps = PhraseSet(phrases)

        def pm_match(v: str) -> Captures | None:
            hit = ps.search(v)
            return None if hit is None else (hit,)

        return pm_match
    n = _num(arg)
    cmp = _NUMERIC.get(name)
    if cmp is not None:  # one call per value: CRS runs ~100 of these (TX checks) per request

        def num_match(v: str) -> Captures | None:
            return (v,) if cmp(_num(v), n) else None

        return num_match
    simple: dict[str, Callable[[str], bool]] = {
        "streq": lambda v: v == arg,
        "contains": lambda v: arg in v,
        "beginswith": lambda v: v.startswith(arg),
        "endswith": lambda v: v.endswith(arg),
        "within": lambda v: v in arg,
        "unconditionalmatch": lambda v: True,
        "nomatch": lambda v: False,
    }
    if name == "containsword":
        word = re.compile(r"(?<![A-Za-z0-9_])" + re.escape(arg) + r"(?![A-Za-z0-9_])")
        simple[name] = lambda v: word.search(v) is not None
    elif name == "validatebyterange":
        allowed = _byte_ranges(arg)
        # a char outside the ranges, as a class: one C-level scan instead of a Python loop per char
        outside = re.compile(
            "[^" + "".join(re.escape(chr(b)) for b in sorted(allowed)) + "]" if allowed else r"[\s\S]"
        )
        simple[name] = lambda v: outside.search(v) is not None
    elif name == "validateurlencoding":
        simple[name] = lambda v: "%" in v and _BAD_URL_ENC.search(v) is not None
    elif name == "validateutf8encoding":
        simple[name] = _invalid_utf8
    elif name in ("ipmatch", "ipmatchfromfile", "ipmatchf"):
        nets = [
            ipaddress.ip_network(x.strip(), strict=False)
            for x in (arg.split(",") if name == "ipmatch" else _read_phrases(arg, base))
        ]
        seen: dict[str, bool] = {}  # REMOTE_ADDR repeats: parsing an address costs ~20 µs

        def in_nets(v: str) -> bool:
            hit = seen.get(v)
            if hit is None:
                hit = _in_nets(v, nets)
                if len(seen) < 4096:
                    seen[v] = hit
            return hit

        simple[name] = in_nets
    elif name == "verifycc":
        cc = compile_rx(arg)

        def cc_match(v: str) -> Captures | None:
            for m in cc.finditer(v):
                digits = re.sub(r"\D", "", m.group(0))
                if 13 <= len(digits) <= 19 and _luhn(digits):
                    return (m.group(0),)
            return None

        return cc_match
    elif name in ("detectsqli", "detectxss"):
        if not libinj.available():
            raise UnsupportedOperator(f"@{name}: libinjection binding not installed")
        detect = libinj.detect_sqli if name == "detectsqli" else libinj.detect_xss
        return detect
    fn = simple.get(name)
    if fn is None:
        raise UnsupportedOperator(f"operator @{name} not implemented")

    def simple_match(v: str) -> Captures | None:
        return (v,) if fn(v) else None

    return simple_match


def _invalid_utf8(v: str) -> bool:
    if v.isascii():
        return False
    try:
        v.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _in_nets(value: str, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return any(addr in n for n in nets)


@dataclass(slots=True)
class Operator:
    """A compiled operator; ``match(value, expand)`` returns captures or None (negation applied)."""

    name: str
    arg: str
    negated: bool
    base: Path
    _fn: MatchFn | None = None
    _cache: dict[str, MatchFn] = field(default_factory=dict)

    @classmethod
    def compile(cls, name: str, arg: str, negated: bool, base: Path) -> Operator:
        op = cls(name.lower().lstrip("@"), arg, negated, base)
        if "%{" in arg:
            # Validate what we can at load: the operator itself must be known.
            _build(op.name, "0" if op.name in ("eq", "ge", "gt", "lt", "le") else "x", base)
        else:
            op._fn = _build(op.name, arg, base)
        return op

    @property
    def has_macros(self) -> bool:
        return self._fn is None

    @property
    def plain(self) -> MatchFn | None:
        """The match function itself when ``match`` would only wrap it (no macros, no negation)."""
        return None if self.negated else self._fn

    def match(self, value: str, expand: Expand) -> Captures | None:
        fn = self._fn
        if fn is None:
            arg = expand(self.arg)
            fn = self._cache.get(arg)
            if fn is None:
                fn = _build(self.name, arg, self.base)
                if len(self._cache) < 256:
                    self._cache[arg] = fn
        caps = fn(value)
        if self.negated:
            return (value,) if caps is None else None
        return caps


def phrases_of(op: Operator) -> list[str] | None:
    """The phrases a macro-free ``@pm``/``@pmFromFile`` searches for, as its PhraseSet holds them."""
    if op.has_macros or op.name not in ("pm", "pmfromfile", "pmf"):
        return None
    try:
        phrases = op.arg.split() if op.name == "pm" else _read_phrases(op.arg, op.base)
    except UnsupportedOperator:
        return None
    return [p for p in dict.fromkeys(phrases) if p]


__all__ = ["Captures", "Operator", "PhraseSet", "UnsupportedOperator", "phrases_of"]
