"""Multi-pattern prefilter: one hyperscan scan per transformation chain rules out most @rx/@pm rules at once.

Hyperscan's PREFILTER mode guarantees no false negatives (it may report a pattern that Python ``re``
then rejects), so skipping a rule hyperscan did not report is exact. ``@pm`` phrases are exact caseless
literals. Only rules whose inputs are fixed request collections qualify (no TX, no MATCHED_VARS, no
macros, no negation). The distinct transformed values of a chain are scanned as one
buffer joined by ``\n``: patterns are compiled multi-line, ``\n`` is a non-word character (so ``^``,
``$``, ``\b`` see each value's edges as they would alone) and extra matches across values only add
candidates. A multiMatch rule's group scans every intermediate value of its chain too. Patterns
using buffer anchors (``\\A``, ``\\z``, ``\\Z``, ``\\G``) or turning flags off inline
are scanned value by value instead. Compiled at load; no I/O after.

Compiling takes seconds, so compiled databases are cached on disk, named by a SHA-256 of the
hyperscan version, flags and patterns: ``$GARRISON_WAF_CACHE`` (empty: no cache), else
``$XDG_CACHE_HOME/garrison/waf`` or ``~/.cache/garrison/waf``. The directory is used only when it is
ours and not writable by group or others (a planted database could hide rules); an unreadable or
stale entry is recompiled and replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from garrison.waf.actions import Transaction
from garrison.waf.batch import transform_list
from garrison.waf.operators import phrases_of
from garrison.waf.rules import Rule, VarSpec

_hs: Any
try:
    import hyperscan as _hs  # type: ignore[import-untyped,unused-ignore,no-redef]
except ImportError:  # pragma: no cover - hyperscan is a declared dependency
    _hs = None

_STATIC = frozenset(
    {
        "ARGS",
        "ARGS_NAMES",
        "ARGS_GET",
        "ARGS_GET_NAMES",
        "ARGS_POST",
        "ARGS_POST_NAMES",
        "REQUEST_URI",
        "REQUEST_URI_RAW",
        "REQUEST_FILENAME",
        "REQUEST_BASENAME",
        "REQUEST_LINE",
        "REQUEST_METHOD",
        "REQUEST_PROTOCOL",
        "REQUEST_HEADERS",
        "REQUEST_HEADERS_NAMES",
        "REQUEST_COOKIES",
        "REQUEST_COOKIES_NAMES",
        "QUERY_STRING",
        "REQUEST_BODY",
        "FILES",
        "FILES_NAMES",
        "MULTIPART_PART_HEADERS",
        "XML",
    }
)
# Per collection: None (all of it) or the keyed specs selecting from it.
Sources = tuple[tuple[str, tuple[VarSpec, ...] | None], ...]
_PM = frozenset({"pm", "pmfromfile", "pmf"})
# Constructs whose meaning depends on the buffer's edges rather than a line's: no joined scan.
_BUFFER_BOUND = re.compile(r"\\[AzZG]|\(\?[a-zA-Z]*-")


@dataclass(slots=True)
class _Group:
    """Rules sharing one transformation chain: one database, one scan per distinct input value."""

    exemplar: Rule  # any member: carries the chain for the shared transform cache
    db: Any
    specs: tuple[VarSpec, ...]
    keys: list[int]  # hyperscan id -> id(rule)
    empty: frozenset[int]  # rules whose pattern matches the empty string (hyperscan reports none)
    joined: bool  # scan all values as one "\n"-joined buffer
    sources: Sources = ()  # from specs, see _sources
    source_id: int = 0  # the same for groups with equal sources
    multi: bool = False  # multiMatch rules: every intermediate value is scanned too


def _eligible(rule: Rule) -> bool:
    op = rule.operator
    return (
        op is not None
        and (op.name == "rx" or op.name in _PM)
        and not op.negated
        and not op.has_macros
        and rule.disabled is None
        and bool(rule.variables)
        and all(v.collection in _STATIC and not v.count for v in rule.variables)
    )


_RX_FLAGS = (
    0
    if _hs is None
    else (
        _hs.HS_FLAG_PREFILTER
        | _hs.HS_FLAG_SINGLEMATCH
        | _hs.HS_FLAG_ALLOWEMPTY
        | _hs.HS_FLAG_DOTALL
        | _hs.HS_FLAG_MULTILINE
    )
)
_PM_FLAGS = 0 if _hs is None else _hs.HS_FLAG_CASELESS | _hs.HS_FLAG_SINGLEMATCH


def _compile_now(patterns: list[bytes], flags: list[int]) -> Any:
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    db.compile(expressions=patterns, ids=list(range(len(patterns))), elements=len(patterns), flags=flags)
    return db


def _cache_dir() -> Path | None:
    env = os.environ.get("GARRISON_WAF_CACHE")
    if env is not None:
        if not env:
            return None
        path = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "garrison" / "waf"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError:
        return None
    if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return path


def _key(kind: str, patterns: list[bytes], flags: list[int]) -> str:
    h = hashlib.sha256(f"{kind}|{_hs.__version__}|{_hs.HS_MODE_BLOCK}|{flags}".encode())
    for p in patterns:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()


def _cache_read(name: str) -> bytes | None:
    d = _cache_dir()
    if d is None:
        return None
    try:
        return (d / name).read_bytes()
    except OSError:
        return None


def _cache_write(name: str, data: bytes) -> None:
    d = _cache_dir()
    if d is None:
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, d / name)
    except OSError:
        return


def _load(blob: bytes) -> Any:
    try:
        db = _hs.loadb(blob, _hs.HS_MODE_BLOCK)
        db.scratch = _hs.Scratch(db)  # a deserialized database comes without one
    except Exception:  # hyperscan.error: stale or corrupt entry, recompiled by the caller
        return None
    return db


def _compile(patterns: list[bytes], flags: list[int] | None = None) -> Any:
    flags = flags or [_RX_FLAGS] * len(patterns)
    name = _key("db", patterns, flags) + ".hsdb"
    blob = _cache_read(name)
    if blob is not None:
        db = _load(blob)
        if db is not None:
            return db
    db = _compile_now(patterns, flags)
    _cache_write(name, _hs.dumpb(db))
    return db


def _accepted(patterns: list[bytes]) -> list[bool]:
    """Which patterns hyperscan compiles in prefilter mode (cached on disk as one JSON list)."""
    name = _key("accepts", patterns, [_RX_FLAGS]) + ".json"
    blob = _cache_read(name)
    if blob is not None:
        try:
            cached = json.loads(blob)
        except ValueError:
            cached = None
        if isinstance(cached, list) and len(cached) == len(patterns):
            return [bool(x) for x in cached]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = [_accepts(p) for p in patterns]
    _cache_write(name, json.dumps(out).encode())
    return out


def _accepts(pattern: bytes) -> bool:
    try:
        _compile_now([pattern], [_RX_FLAGS])
    except Exception:  # hyperscan.error: unsupported even in prefilter mode
        return False
    return True


class Prefilter:
    """For one phase: which eligible rules could match this request (a superset, never fewer)."""

    def __init__(self, groups: list[_Group], eligible: frozenset[int]) -> None:
        self.groups = groups
        self.eligible = eligible
        # id(rule) -> its group; -1 for an eligible rule in no group (nothing to search: no match).
        self.group_of: dict[int, int] = dict.fromkeys(eligible, -1)
        self.group_of.update((rid, i) for i, g in enumerate(groups) for rid in g.keys)

    @property
    def rule_count(self) -> int:
        return len(self.eligible)

    @classmethod
    def build(cls, rules: Sequence[Rule]) -> Prefilter | None:
        if _hs is None:
            return None
        # (chain, joined, multiMatch) -> members as (rule, hyperscan expressions, flag)
        by_chain: dict[tuple[tuple[str, ...], bool, bool], list[tuple[Rule, list[bytes], int]]] = {}
        chosen = [r for r in rules if _eligible(r)]
        rx = [
            r.operator.arg.encode("latin-1", "replace")
            for r in chosen
            if r.operator and r.operator.name == "rx"
        ]
        accepted = dict(zip(rx, _accepted(rx), strict=True))
        for rule in chosen:
            op = rule.operator
            assert op is not None
            if op.name in _PM:
                phrases = phrases_of(op)
                if phrases is None:
                    continue
                exprs = [re.escape(p).encode("latin-1") for p in phrases]
                key = (rule.transform_names, True, rule.multi_match)
                by_chain.setdefault(key, []).append((rule, exprs, _PM_FLAGS))
                continue
            pattern = op.arg.encode("latin-1", "replace")
            if not accepted[pattern]:
                continue
            joined = _BUFFER_BOUND.search(op.arg) is None
            key = (rule.transform_names, joined, rule.multi_match)
            by_chain.setdefault(key, []).append((rule, [pattern], _RX_FLAGS))
        groups: list[_Group] = []
        eligible: set[int] = set()
        source_ids: dict[Sources, int] = {}
        for (_, joined, multi), members in by_chain.items():
            specs = tuple(dict.fromkeys(v for r, _, _ in members for v in r.variables))
            empty = frozenset(
                id(r)
                for r, _, _ in members
                if r.operator is not None and r.operator.match("", lambda s: s) is not None
            )
            exprs = [e for _, es, _ in members for e in es]
            flags = [f for _, es, f in members for _ in es]
            keys = [id(r) for r, es, _ in members for _ in es]
            db = _compile(exprs, flags)
            sources = _sources(specs)
            sid = source_ids.setdefault(sources, len(source_ids))
            groups.append(_Group(members[0][0], db, specs, keys, empty, joined, sources, sid, multi))
            eligible.update(id(r) for r, _, _ in members)
        return cls(groups, frozenset(eligible)) if groups else None

    def scan(self, index: int, t: Transaction, hits: set[int], shared: dict[int, list[str]]) -> None:
        """Add to ``hits`` the rules of group ``index`` that could match ``t``.

        ``shared`` caches the gathered raw values per target list for one phase of one request.

        The engine scans a group only when it reaches the group's first rule, so the groups of rules
        a request never runs (paranoia levels above its own, skipped sections) cost nothing.
        """
        g = self.groups[index]
        # Groups with the same targets (CRS repeats a few lists) share the distinct raw values.
        raws = shared.get(g.source_id)
        if raws is None:
            raws = shared[g.source_id] = _gather(t, g.sources)
        if not raws:
            return
        ex = g.exemplar
        # Not through the per-request cache: filling it costs more than the few candidate rules
        # (which transform their own values) save.
        if g.multi:
            values = _intermediates(ex, raws)
        else:
            values = transform_list(ex.transform_names, ex.transforms, raws)
        if not all(values):
            hits.update(g.empty)
        keys = g.keys

        def on_match(hs_id: int, _from: int, _to: int, _flags: int, _ctx: object) -> bool:
            hits.add(keys[hs_id])
            return False

        if g.joined:
            buf = "\n".join(filter(None, values))
            if buf:
                g.db.scan(buf.encode("latin-1", "replace"), match_event_handler=on_match)
        else:
            for value in values:
                if value:
                    g.db.scan(value.encode("latin-1", "replace"), match_event_handler=on_match)

    def candidates(self, t: Transaction) -> set[int]:
        """Every group scanned at once (the engine scans lazily with ``scan``; kept for tests/tools)."""
        hits: set[int] = set()
        shared: dict[int, list[str]] = {}
        for i in range(len(self.groups)):
            self.scan(i, t, hits, shared)
        return hits


def _intermediates(rule: Rule, raws: list[str]) -> list[str]:
    """Every value a multiMatch rule's operator may see: the raw ones and those after each step."""
    out: dict[str, None] = dict.fromkeys(raws)
    values = raws
    for name, fn in zip(rule.transform_names, rule.transforms, strict=True):
        values = transform_list((name,), (fn,), values)
        out.update(dict.fromkeys(values))
    return list(out)


def _gather(t: Transaction, sources: Sources) -> list[str]:
    """The distinct values of ``sources`` in ``t`` (a superset of what any member rule reads)."""
    raws: dict[str, None] = {}
    for coll, keyed in sources:
        items = t.collection(coll)
        if keyed is None:
            raws.update(dict.fromkeys([v for _, v in items]))
        else:
            if len(keyed) == 1:  # the usual case (REQUEST_HEADERS:User-Agent): no generator
                sel = keyed[0].selects
                for k, v in items:
                    if v not in raws and sel(k):
                        raws[v] = None
                continue
            for k, v in items:
                if v not in raws and any(s.selects(k) for s in keyed):
                    raws[v] = None
    return list(raws)


def _sources(specs: tuple[VarSpec, ...]) -> Sources:
    """Per collection: None when some spec takes all of it, else the keyed specs selecting from it."""
    out: dict[str, list[VarSpec] | None] = {}
    for spec in specs:
        whole = spec.key is None and spec.key_rx is None
        if spec.collection not in out:
            out[spec.collection] = None if whole else [spec]
            continue
        keyed = out[spec.collection]
        if keyed is not None:
            if whole:
                out[spec.collection] = None
            else:
                keyed.append(spec)
    return tuple((c, None if k is None else tuple(k)) for c, k in out.items())


__all__ = ["Prefilter"]
