"""A transformation chain over many values at once, and its per-request cache.

CRS runs the same few chains over every argument, header and cookie, and a Python loop per value per
step is where an interpreted WAF spends its time. Most transformations act on each character or on
short runs that a non-latin-1 character cannot be part of, so ``fn(SEP.join(values)).split(SEP)`` is
exactly ``[fn(v) for v in values]`` with one C-level call when no value holds ``SEP`` and none of
the ``SEP_SAFE`` transformations below can create, delete or match across it. ``SEP`` is a control
character absent from the values (``separator``), or U+FFFF, which latin-1 text never holds.
The other steps (path normalization, JS/CSS decoding, base64, trim, ...) run per value. No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from garrison.waf.transforms import IDENTITY_UNLESS, Transform, changers

SEP = "\uffff"
# Transformations with f(a + SEP + b) == f(a) + SEP + f(b) for all latin-1 a, b (read from each
# function in transforms.py: char-wise maps, or regexes whose every match is latin-1 only and
# cannot reach past a SEP; a run of whitespace/escape stops at it). jsDecode and cssDecode are
# not here: their ``\\(.)`` escapes would swallow a SEP after a trailing backslash.
SEP_SAFE = frozenset(
    {
        "lowercase",
        "uppercase",
        "urldecode",
        "urldecodeuni",
        "urldecodestrict",
        "htmlentitydecode",
        "cmdline",
        "compresswhitespace",
        "removewhitespace",
        "removenulls",
        "replacenulls",
        "utf8tounicode",
        "escapeseqdecode",
        "sqlhexdecode",
    }
)
_SEPARATORS = tuple(map(chr, [*range(0x01, 0x09), *range(0x0E, 0x20)]))
# Characters a step acts on; a step is skipped when the joined values hold none (memchr ``in`` tests,
# far faster than a regex class). Large sets (lowercase, cmdline) are cheaper to just run.
_TRIGGERS: dict[str, str] = {name: chars for name, chars in IDENTITY_UNLESS.items() if len(chars) <= 8}

TransformCache = dict[tuple[str, ...], dict[str, str]]
_SMALL = 4  # up to this many values, the per-value loop is the faster one
# A regex class scan finds "nothing to change" fast on short text; on long text running the steps
# (C calls over the joined values) is cheaper than the scan.
_PROBE_MAX = 1024
_CHANGERS: dict[tuple[str, ...], re.Pattern[str] | None] = {}


def separator(values: list[str]) -> str:
    """A control character none of ``values`` holds (keeps the joined text latin-1, where ``str``
    methods take their fast paths), else ``SEP``. None of these is a character any ``SEP_SAFE``
    transformation matches, maps or deletes (not NUL, whitespace, hex digit, letter or punctuation);
    a decoding step may create one (``%01``), which ``transform_list`` detects by counting.
    """
    probe = "".join(values)
    for sep in _SEPARATORS:
        if sep not in probe:
            return sep
    return SEP


def _acts(name: str, text: str) -> bool:
    """False only when step ``name`` surely leaves ``text`` unchanged."""
    if name == "utf8tounicode":
        return not text.isascii()
    chars = _TRIGGERS.get(name)
    return chars is None or any(c in text for c in chars)


def transform_list(names: tuple[str, ...], fns: Sequence[Transform], values: list[str]) -> list[str]:
    """``values`` through the chain: exactly ``[f_n(...f_1(v)) for v in values]``.

    Runs of ``SEP_SAFE`` steps work on the joined values (one C-level call per step); the other
    steps run per value, and only when the joined values hold a character they act on.
    """
    n = len(values)
    if n == 0 or not names:
        return values
    changer = _chain_changer(names)
    if changer is not None:
        probe = "".join(values)
        if len(probe) <= _PROBE_MAX and changer.search(probe) is None:
            return values  # no value holds a character any step acts on
    if n <= _SMALL:  # joining costs more than it saves
        return _slow(names, fns, values)
    sep = separator(values)
    joined = sep.join(values)
    parts: list[str] | None = None  # the per-value form, when it is the current one
    for name, fn in zip(names, fns, strict=True):
        if name in SEP_SAFE:
            if parts is not None:
                sep = separator(parts)
                joined = sep.join(parts)
                parts = None
            if _acts(name, joined):
                joined = fn(joined)
            continue
        if parts is None:
            if not _acts(name, joined):
                continue
            if joined.count(sep) != n - 1:  # a decoding step created the separator
                return _slow(names, fns, values)
            parts = joined.split(sep)
        elif not _acts(name, "".join(parts)):
            continue
        parts = [fn(v) for v in parts]
    if parts is not None:
        return parts
    if joined.count(sep) != n - 1:
        return _slow(names, fns, values)
    return joined.split(sep)


def _chain_changer(names: tuple[str, ...]) -> re.Pattern[str] | None:
    """``changers(names)``, compiled once per chain."""
    try:
        return _CHANGERS[names]
    except KeyError:
        pat = _CHANGERS[names] = changers(names)
        return pat


def _slow(names: tuple[str, ...], fns: Sequence[Transform], values: list[str]) -> list[str]:
    """The plain per-value loop (a few values, or one decoding to the separator)."""
    out = []
    for v in values:
        for fn in fns:
            v = fn(v)
        out.append(v)
    return out


def transform_values(
    cache: TransformCache, names: tuple[str, ...], fns: Sequence[Transform], raws: list[str]
) -> list[str]:
    """``raws`` through the chain ``names`` (functions ``fns``), reusing and filling ``cache``.

    Transformations are pure and keyed by name, so a value computed for one rule's chain serves
    every later rule with the same chain in this request. ``cache`` maps a chain to {raw: value}.
    """
    if not names:
        return raws
    full = cache.get(names)
    if full is None:
        full = cache[names] = {}
    missing = [r for r in raws if r not in full]
    if missing:
        todo = list(dict.fromkeys(missing))
        full.update(zip(todo, transform_list(names, fns, todo), strict=True))
    return [full[r] for r in raws]


def transform_steps(
    cache: TransformCache, names: tuple[str, ...], fns: Sequence[Transform], raws: list[str]
) -> list[list[str]]:
    """``[raws, after step 1, after steps 1-2, ...]``: what a multiMatch rule's operator may see.

    Each prefix of the chain is cached like a chain of its own, so rules sharing a prefix (CRS's
    ``utf8toUnicode,urlDecodeUni,...``) compute it once per request.
    """
    out = [raws]
    cur = raws
    for k in range(len(names)):
        key = names[: k + 1]
        done = cache.get(key)
        if done is None:
            done = cache[key] = {}
        if all(r in done for r in raws):
            cur = [done[r] for r in raws]
        else:
            cur = transform_list(names[k : k + 1], fns[k : k + 1], cur)
            done.update(zip(raws, cur, strict=True))
        out.append(cur)
    return out


__all__ = [
    "SEP",
    "SEP_SAFE",
    "TransformCache",
    "separator",
    "transform_list",
    "transform_steps",
    "transform_values",
]
