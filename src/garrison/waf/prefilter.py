"""Multi-pattern prefilter: one hyperscan scan per transformation chain rules out most @rx rules at once.

Hyperscan's PREFILTER mode guarantees no false negatives (it may report a pattern that Python ``re``
then rejects), so skipping a rule hyperscan did not report is exact. Only rules whose inputs are fixed
request collections qualify (no TX, no MATCHED_VARS, no macros, no multiMatch, no negation).
Compiled at load; no I/O.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from garrison.waf.actions import Transaction
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
Transform = Callable[[Transaction, Rule, str], str]


@dataclass(slots=True)
class _Group:
    """Rules sharing one transformation chain: one database, one scan per distinct input value."""

    exemplar: Rule  # any member: carries the chain for the shared transform cache
    db: Any
    specs: tuple[VarSpec, ...]
    keys: list[int]  # hyperscan id -> id(rule)
    empty: frozenset[int]  # rules whose pattern matches the empty string (hyperscan reports none)


def _eligible(rule: Rule) -> bool:
    op = rule.operator
    return (
        op is not None
        and op.name == "rx"
        and not op.negated
        and not op.has_macros
        and not rule.multi_match
        and rule.disabled is None
        and bool(rule.variables)
        and all(v.collection in _STATIC and not v.count for v in rule.variables)
    )


def _compile(patterns: list[bytes]) -> Any:
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    flags = (
        _hs.HS_FLAG_PREFILTER
        | _hs.HS_FLAG_SINGLEMATCH
        | _hs.HS_FLAG_ALLOWEMPTY
        | _hs.HS_FLAG_DOTALL
        | _hs.HS_FLAG_MULTILINE
    )
    db.compile(
        expressions=patterns,
        ids=list(range(len(patterns))),
        elements=len(patterns),
        flags=[flags] * len(patterns),
    )
    return db


def _accepts(pattern: bytes) -> bool:
    try:
        _compile([pattern])
    except Exception:  # hyperscan.error: unsupported even in prefilter mode
        return False
    return True


class Prefilter:
    """For one phase: which eligible rules could match this request (a superset, never fewer)."""

    def __init__(self, groups: list[_Group], eligible: frozenset[int]) -> None:
        self.groups = groups
        self.eligible = eligible

    @property
    def rule_count(self) -> int:
        return len(self.eligible)

    @classmethod
    def build(cls, rules: Sequence[Rule]) -> Prefilter | None:
        if _hs is None:
            return None
        by_chain: dict[tuple[str, ...], list[tuple[Rule, bytes]]] = {}
        for rule in rules:
            if not _eligible(rule):
                continue
            assert rule.operator is not None
            pattern = rule.operator.arg.encode("latin-1", "replace")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if not _accepts(pattern):
                    continue
            by_chain.setdefault(rule.transform_names, []).append((rule, pattern))
        groups: list[_Group] = []
        eligible: set[int] = set()
        for members in by_chain.values():
            specs = tuple(dict.fromkeys(v for r, _ in members for v in r.variables))
            empty = frozenset(
                id(r)
                for r, _ in members
                if r.operator is not None and r.operator.match("", lambda s: s) is not None
            )
            groups.append(
                _Group(
                    members[0][0],
                    _compile([p for _, p in members]),
                    specs,
                    [id(r) for r, _ in members],
                    empty,
                )
            )
            eligible.update(id(r) for r, _ in members)
        return cls(groups, frozenset(eligible)) if groups else None

    def candidates(self, t: Transaction, transform: Transform) -> set[int]:
        hits: set[int] = set()
        for g in self.groups:
            keys = g.keys
            seen: set[str] = set()

            def on_match(
                hs_id: int, _from: int, _to: int, _flags: int, _ctx: object, _keys: list[int] = keys
            ) -> bool:
                hits.add(_keys[hs_id])
                return False

            for spec in g.specs:
                for k, v in t.collection(spec.collection):
                    if v in seen or not spec.selects(k):
                        continue
                    seen.add(v)
                    value = transform(t, g.exemplar, v) if g.exemplar.transform_names else v
                    if value:
                        g.db.scan(value.encode("latin-1", "replace"), match_event_handler=on_match)
                    else:
                        hits.update(g.empty)
        return hits


__all__ = ["Prefilter"]
