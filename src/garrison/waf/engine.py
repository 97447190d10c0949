"""The WAF engine: SecLang rules compiled once, executed over a sans-IO request (phases 1 and 2).

Semantics follow libmodsecurity 3 with the CRS in anomaly-scoring mode: rules run in file order per
phase, ``skipAfter`` jumps to the next marker of the same phase, non-disruptive actions run for every
matching value, and a chain matches only when each link does. No sockets, no files after ``load``.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from garrison.waf.actions import Transaction, to_int
from garrison.waf.prefilter import Prefilter
from garrison.waf.request import RuleMatch, WafRequest, WafResult
from garrison.waf.rules import Marker, Rule, Unsupported
from garrison.waf.seclang import RuleSet, load_rules
from garrison.waf.transforms import changers
from garrison.waf.variables import Items, RequestData

_SCORE_VARS = ("anomaly_score", "inbound_anomaly_score", "blocking_inbound_anomaly_score")
_STOPPING = frozenset({"deny", "drop", "redirect"})
# Collections that live in the Transaction and change while rules run: values read from them are never cached.
_LIVE = frozenset({"TX", "MATCHED_VAR", "MATCHED_VAR_NAME", "MATCHED_VARS", "MATCHED_VARS_NAMES"})


@dataclass(frozen=True, slots=True)
class WafSettings:
    """The crs-setup knobs the engine presets in TX before any rule runs (CRS's 901 keeps preset values)."""

    paranoia_level: int = 1
    executing_paranoia_level: int | None = None
    inbound_anomaly_score_threshold: int = 5
    outbound_anomaly_score_threshold: int = 4
    detection_only: bool = False
    tx: tuple[tuple[str, str], ...] = ()

    def initial_tx(self, paranoia_level: int | None = None) -> dict[str, str]:
        pl = str(paranoia_level or self.paranoia_level)
        tx = {
            "paranoia_level": pl,
            "blocking_paranoia_level": pl,
            "inbound_anomaly_score_threshold": str(self.inbound_anomaly_score_threshold),
            "outbound_anomaly_score_threshold": str(self.outbound_anomaly_score_threshold),
        }
        if self.executing_paranoia_level is not None:
            epl = str(max(self.executing_paranoia_level, int(pl)))
            tx["executing_paranoia_level"] = epl
            tx["detection_paranoia_level"] = epl
        tx.update((k.lower(), v) for k, v in self.tx)
        return tx


class WafEngine:
    """Compiled rules + settings. ``inspect`` is reentrant: all per-request state lives in a Transaction."""

    def __init__(self, ruleset: RuleSet, settings: WafSettings, *, prefilter: bool = True) -> None:
        self.ruleset = ruleset
        self.settings = settings
        self._phases: dict[int, list[Rule | Marker]] = {1: [], 2: []}
        for item in ruleset.items:
            if isinstance(item, Marker):
                for items in self._phases.values():
                    items.append(item)
            elif item.phase in self._phases:
                self._phases[item.phase].append(item)
        self._markers: dict[int, dict[str, list[int]]] = {}
        for phase, items in self._phases.items():
            index: dict[str, list[int]] = {}
            for i, it in enumerate(items):
                if isinstance(it, Marker):
                    index.setdefault(it.name, []).append(i)
            self._markers[phase] = index
        self._prefilters: dict[int, Prefilter | None] = {
            phase: (Prefilter.build([r for r in items if isinstance(r, Rule)]) if prefilter else None)
            for phase, items in self._phases.items()
        }
        self._ids = itertools.count(1)
        self._inspecting = threading.Lock()
        # Rules reading only request collections share one per-request list of (name, transformed
        # value) per distinct (variables, transformations): CRS repeats a handful of target lists.
        self._vkeys: dict[int, int] = {}
        interned: dict[tuple[object, ...], int] = {}
        for item in ruleset.items:
            link = item if isinstance(item, Rule) else None
            while link is not None:
                if link.variables and not any(v.collection in _LIVE for v in link.variables):
                    key = (link.variables, link.transform_names)
                    self._vkeys[id(link)] = interned.setdefault(key, len(interned))
                link = link.chain

    @classmethod
    def load(
        cls,
        paths: Sequence[str | Path],
        *,
        paranoia_level: int = 1,
        executing_paranoia_level: int | None = None,
        inbound_threshold: int = 5,
        outbound_threshold: int = 4,
        detection_only: bool = False,
        tx: Mapping[str, str] | None = None,
        prefilter: bool = True,
    ) -> WafEngine:
        """Parse and compile the rule files once: crs-setup first, then the rules (ModSecurity's order)."""
        settings = WafSettings(
            paranoia_level,
            executing_paranoia_level,
            inbound_threshold,
            outbound_threshold,
            detection_only,
            tuple((tx or {}).items()),
        )
        return cls(load_rules(paths), settings, prefilter=prefilter)

    @property
    def unsupported(self) -> list[Unsupported]:
        return self.ruleset.unsupported

    @property
    def prefilter_stats(self) -> dict[int, int]:
        return {p: (f.rule_count if f else 0) for p, f in self._prefilters.items()}

    def __repr__(self) -> str:
        n = sum(1 for r in self.ruleset.items if isinstance(r, Rule))
        return f"<WafEngine rules={n} unsupported={len(self.unsupported)} pl={self.settings.paranoia_level}>"

    # -- execution -----------------------------------------------------------------------------
    def inspect(
        self,
        request: WafRequest,
        *,
        paranoia_level: int | None = None,
        remove_rule_ids: Iterable[int] = (),
    ) -> WafResult:
        """Run phases 1 and 2 over ``request``; per-route ``paranoia_level`` and rule exclusions apply.

        Thread-safe: one inspection at a time per engine, because the hyperscan databases share one
        scratch space (the gateway inspects bodies on a worker thread, heads on the event loop).
        """
        with self._inspecting:
            return self._inspect(request, paranoia_level, remove_rule_ids)

    def _inspect(
        self, request: WafRequest, paranoia_level: int | None, remove_rule_ids: Iterable[int]
    ) -> WafResult:
        data = RequestData(request, f"{next(self._ids):020d}")
        mode = "DetectionOnly" if self.settings.detection_only else "On"
        t = Transaction(data, self.settings.initial_tx(paranoia_level), mode)
        t.removed_ids.update(remove_rule_ids)
        t.removing = bool(t.removed_ids)
        run = _Run(self, t)
        if run.phase(1):
            data.process_body(t.processor, t.force_body, t.body_access)
            t.vcache.clear()
            run.phase(2)
        score = max(to_int(t.tx.get(k, "0")) for k in _SCORE_VARS)
        return WafResult(
            tuple(run.matches), score, run.would_block, run.blocking_rule, t.engine_mode != "On", dict(t.tx)
        )


class _Run:
    """One pass of the rules over one transaction (the mutable half of ``inspect``)."""

    __slots__ = (
        "allowed",
        "blocking_rule",
        "candidates",
        "eligible",
        "engine",
        "matches",
        "t",
        "would_block",
    )

    def __init__(self, engine: WafEngine, t: Transaction) -> None:
        self.engine = engine
        self.t = t
        self.matches: list[RuleMatch] = []
        self.would_block = False
        self.blocking_rule: int | None = None
        self.allowed = False
        self.candidates: set[int] | None = None
        self.eligible: frozenset[int] = frozenset()

    def phase(self, phase: int) -> bool:
        """Run one phase; False when processing must stop (deny in blocking mode, allow, engine off)."""
        t = self.t
        items = self.engine._phases[phase]
        markers = self.engine._markers[phase]
        pf = self.engine._prefilters[phase]
        self.candidates = pf.candidates(t, _transform_all) if pf is not None else None
        self.eligible = pf.eligible if pf is not None else frozenset()
        i = 0
        n = len(items)
        while i < n:
            rule = items[i]
            i += 1
            if isinstance(rule, Marker) or rule.disabled is not None or t.is_removed(rule):
                continue
            if t.engine_mode == "Off":
                return False
            t.rule = rule
            t.matched_vars = []
            if not self._chain(rule):
                continue
            self._log(rule, phase)
            if rule.disruptive in _STOPPING or (rule.disruptive == "allow" and t.engine_mode == "On"):
                if rule.disruptive != "allow":
                    self.would_block = True
                    if self.blocking_rule is None:
                        self.blocking_rule = rule.id
                if t.engine_mode == "On":
                    return rule.disruptive == "allow" and rule.allow_scope == "phase"
            if rule.skip_after is not None:
                later = [j for j in markers.get(rule.skip_after, ()) if j >= i]
                i = later[0] + 1 if later else n
            elif rule.skip:
                i = _skip(items, i, rule.skip)
        return True

    def _chain(self, rule: Rule) -> bool:
        link: Rule | None = rule
        while link is not None:
            if not self._rule(link, link is rule):
                return False
            link = link.chain
        return True

    def _rule(self, rule: Rule, top: bool) -> bool:
        t = self.t
        op = rule.operator
        if op is None:  # SecAction: unconditional, actions run once
            self._actions(rule)
            return True
        if (
            top
            and self.candidates is not None
            and id(rule) in self.eligible
            and id(rule) not in self.candidates
        ):
            return False
        # Values are read before MATCHED_VARS is reset: a chain link may target the previous link's.
        values = self._values(rule) if rule.multi_match else self._tvalues(rule)
        t.matched_vars = []
        matched = False
        expand = t.expand
        for var_name, raw in values:
            if rule.multi_match:
                caps = None
                value = raw
                for fn in (None, *rule.transforms):
                    if fn is not None:
                        step = fn(value)
                        if step == value:  # same input, same (non-)match: operators are pure
                            continue
                        value = step
                    caps = op.match(value, expand)
                    if caps is not None:
                        break
            else:
                value = raw  # already transformed by _tvalues
                caps = op.match(value, expand)
            if caps is None:
                continue
            matched = True
            t.matched_var = value
            t.matched_var_name = var_name
            t.matched_vars.append((var_name, value))
            if rule.capture:
                t.capture(caps)
            self._actions(rule)
        return matched

    def _actions(self, rule: Rule) -> None:
        t = self.t
        for sv in rule.setvars:
            t.setvar(sv)
        for c in rule.ctls:
            t.ctl(c)

    def _tvalues(self, rule: Rule) -> Items:
        """(name, transformed value) per target, from the per-request cache when the rule allows it."""
        t = self.t
        vkey = self.engine._vkeys.get(id(rule))
        if vkey is not None and t.exclusions(rule):
            vkey = None  # exclusions differ per rule (and per ctl): no sharing
        if vkey is not None:
            cached = t.vcache.get(vkey)
            if cached is not None:
                return cached
        values = self._values(rule)
        if rule.transform_names:
            values = list(
                zip([n for n, _ in values], _transform_all(t, rule, [v for _, v in values]), strict=True)
            )
        if vkey is not None:
            t.vcache[vkey] = values
        return values

    def _values(self, rule: Rule) -> Items:
        t = self.t
        out: Items = []
        excl = t.exclusions(rule)
        for spec in rule.variables:
            coll = spec.collection
            if coll == "TX" and spec.key is not None:  # direct lookup instead of a scan of all TX
                v = t.tx.get(spec.key)
                if spec.count:
                    out.append((coll, "0" if v is None else "1"))
                elif v is not None:
                    out.append((f"TX:{spec.key}", v))
                continue
            items = t.collection(coll)
            cexcl = [e for e in excl if e.collection == coll] if excl else excl
            if spec.count:
                out.append((coll, str(sum(1 for k, _ in items if spec.selects(k)))))
                continue
            if spec.key is None and spec.key_rx is None and not cexcl:
                out.extend(((f"{coll}:{k}" if k else coll), v) for k, v in items)
                continue
            for k, v in items:
                if not spec.selects(k):
                    continue
                if cexcl and any(e.selects(k) for e in cexcl):
                    continue
                out.append((f"{coll}:{k}" if k else coll, v))
        return out

    def _log(self, rule: Rule, phase: int) -> None:
        if not rule.log:
            return
        t = self.t
        self.matches.append(
            RuleMatch(
                rule.id, phase, t.expand(rule.msg), t.expand(rule.logdata)[:512], rule.severity, rule.tags
            )
        )


_PREFIXES: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = {}
_CHANGERS: dict[tuple[str, ...], re.Pattern[str] | None] = {}


_UNSET: Any = object()


def _prefixes(names: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """``names[:1]``, ``names[:2]``, ... ``names``: the cache keys of a chain's intermediate values."""
    out = _PREFIXES.get(names)
    if out is None:
        out = _PREFIXES[names] = tuple(names[: k + 1] for k in range(len(names)))
    return out


def _transform_all(t: Transaction, rule: Rule, raws: Iterable[str]) -> list[str]:
    """``raws`` through the rule's transformations, cached per request for every chain prefix.

    Transformations are pure and keyed by name, so a value computed for ``urlDecodeUni,lowercase`` is
    the same for any rule with that chain, and its ``urlDecodeUni`` step serves every chain starting so.
    """
    names = rule.transform_names
    tcache = t.tcache
    full = tcache.get(names)
    if full is None:
        full = tcache[names] = {}
    changes = _CHANGERS.get(names, _UNSET)
    if changes is _UNSET:
        changes = _CHANGERS[names] = changers(names)
    may_change = changes.search if isinstance(changes, re.Pattern) else None
    if may_change is not None:
        raws = list(raws)
        if may_change("".join(raws)) is None:  # one C scan: no value holds a char any step acts on
            return raws
    out: list[str] = []
    for raw in raws:
        value = full.get(raw)
        if value is None:
            value = raw
            if may_change is not None and may_change(raw) is None:  # no step can change it
                full[raw] = raw
                out.append(raw)
                continue
            prefixes = _prefixes(names)
            start = 0
            for k in range(len(prefixes) - 2, -1, -1):  # longest cached proper prefix first
                hit = tcache.get(prefixes[k])
                if hit is not None and raw in hit:
                    value = hit[raw]
                    start = k + 1
                    break
            fns = rule.transforms
            for k in range(start, len(fns)):
                value = fns[k](value)
                step = tcache.get(prefixes[k])
                if step is None:
                    step = tcache[prefixes[k]] = {}
                step[raw] = value
        out.append(value)
    return out


def _skip(items: list[Rule | Marker], i: int, count: int) -> int:
    while count > 0 and i < len(items):
        if isinstance(items[i], Rule):
            count -= 1
        i += 1
    return i


__all__ = ["WafEngine", "WafSettings"]
