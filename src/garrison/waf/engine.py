"""The WAF engine: SecLang rules compiled once, executed over a sans-IO request (phases 1 and 2).

Semantics follow libmodsecurity 3 with the CRS in anomaly-scoring mode: rules run in file order per
phase, ``skipAfter`` jumps to the next marker of the same phase, non-disruptive actions run for every
matching value, and a chain matches only when each link does. No sockets, no files after ``load``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from garrison.waf.actions import Transaction, to_int
from garrison.waf.batch import transform_steps, transform_values
from garrison.waf.operators import Captures, Operator
from garrison.waf.prefilter import Prefilter
from garrison.waf.request import RuleMatch, WafRequest, WafResult
from garrison.waf.rules import Marker, Rule, Unsupported
from garrison.waf.seclang import RuleSet, load_rules
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
        # Per phase, the rule at each index, or None where nothing runs (a marker, a disabled rule).
        self._runnable: dict[int, list[Rule | None]] = {
            phase: [it if isinstance(it, Rule) and it.disabled is None else None for it in items]
            for phase, items in self._phases.items()
        }
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
        # value) per distinct (variables, exclusions, transformations): CRS repeats a handful of
        # target lists (with the same ``!REQUEST_COOKIES:/__utm/`` exclusions).
        self._vkeys: dict[int, int] = {}
        interned: dict[tuple[object, ...], int] = {}
        for item in ruleset.items:
            link = item if isinstance(item, Rule) else None
            while link is not None:
                if link.variables and not any(v.collection in _LIVE for v in link.variables):
                    key = (link.variables, tuple(link.exclusions), link.transform_names)
                    self._vkeys[id(link)] = interned.setdefault(key, len(interned))
                link = link.chain

        # Rules whose targets are all ``TX:key`` (count or value), with no transformation: _rule
        # reads them straight from TX (what _values does for them, minus its generic dispatch).
        self._txkeys: dict[int, tuple[tuple[str, str, bool], ...]] = {}
        for item in ruleset.items:
            link = item if isinstance(item, Rule) else None
            while link is not None:
                if (
                    link.variables
                    and not link.transform_names
                    and all(v.collection == "TX" and v.key is not None for v in link.variables)
                ):
                    self._txkeys[id(link)] = tuple(
                        (f"TX:{v.key}", v.key, v.count) for v in link.variables if v.key is not None
                    )
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
        "engine",
        "gathered",
        "group_of",
        "matches",
        "prefilter",
        "scanned",
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
        self.prefilter: Prefilter | None = None
        self.candidates: set[int] = set()  # rules the scanned groups could not rule out
        self.scanned: set[int] = set()  # prefilter groups scanned in this phase
        self.gathered: dict[int, list[str]] = {}  # their raw values per target list (source_id)
        self.group_of: dict[int, int] = {}  # id(rule) -> prefilter group (-1: none can match)

    def phase(self, phase: int) -> bool:
        """Run one phase; False when processing must stop (deny in blocking mode, allow, engine off)."""
        t = self.t
        items = self.engine._phases[phase]
        markers = self.engine._markers[phase]
        pf = self.engine._prefilters[phase]
        runnable = self.engine._runnable[phase]
        self.prefilter = pf
        self.candidates = set()
        self.scanned = set()
        self.gathered = {}
        self.group_of = group_of = pf.group_of if pf is not None else {}
        i = 0
        n = len(items)
        while i < n:
            rule = runnable[i]
            i += 1
            if rule is None or (t.removing and t.is_removed(rule)):
                continue
            if t.engine_mode == "Off":
                return False
            gi = group_of.get(id(rule))
            if gi is not None and not self._candidate(rule, gi):
                continue  # ruled out by the prefilter: the rule cannot match
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
        if rule.chain is None:
            return self._rule(rule)
        link: Rule | None = rule
        while link is not None:
            if not self._rule(link):
                return False
            link = link.chain
        return True

    def _rule(self, rule: Rule) -> bool:
        t = self.t
        op = rule.operator
        if op is None:  # SecAction: unconditional, actions run once
            self._actions(rule)
            return True
        if rule.multi_match:
            return self._multi(rule, op)
        # Values are read before MATCHED_VARS is reset: a chain link may target the previous link's.
        txkeys = self.engine._txkeys.get(id(rule))
        if txkeys is not None:  # TX:key targets only, no transformation: read them directly
            tx = t.tx
            values: Items = []
            for name, key, count in txkeys:
                v = tx.get(key)
                if count:
                    values.append(("TX", "0" if v is None else "1"))
                elif v is not None:
                    values.append((name, v))
        else:
            values = self._tvalues(rule)
        t.matched_vars = []
        matched = False
        expand = t.expand
        plain = op.plain
        # Repeated values (a JSON array of like objects) need one operator call: without macros
        # operators are pure functions of the value.
        memo: dict[str, Captures | None] | None = None if op.has_macros or len(values) < 4 else {}
        for var_name, value in values:  # values already transformed by _tvalues
            if memo is not None and value in memo:
                caps = memo[value]
            else:
                caps = plain(value) if plain is not None else op.match(value, expand)
                if memo is not None:
                    memo[value] = caps
            if caps is None:
                continue
            matched = True
            self._matched(rule, var_name, value, caps)
        return matched

    def _matched(self, rule: Rule, var_name: str, value: str, caps: Captures) -> None:
        """One variable matched: MATCHED_VAR(S), captures, then the rule's actions."""
        t = self.t
        t.matched_var = value
        t.matched_var_name = var_name
        t.matched_vars.append((var_name, value))
        if rule.capture:
            t.capture(caps)
        self._actions(rule)

    def _multi(self, rule: Rule, op: Operator) -> bool:
        """multiMatch: the operator runs on the raw value and after each step that changes it."""
        t = self.t
        values = self._values(rule)
        t.matched_vars = []
        matched = False
        expand = t.expand
        steps = transform_steps(t.tcache, rule.transform_names, rule.transforms, [v for _, v in values])
        memo: dict[str, Captures | None] | None = None if op.has_macros else {}
        for i, (var_name, raw) in enumerate(values):
            caps = None
            value = raw
            for k, form in enumerate(steps):
                if k:
                    step = form[i]
                    if step == value:  # same input, same (non-)match: operators are pure
                        continue
                    value = step
                if memo is None:
                    caps = op.match(value, expand)
                elif value in memo:
                    caps = memo[value]
                else:
                    caps = memo[value] = op.match(value, expand)
                if caps is not None:
                    break
            if caps is None:
                continue
            matched = True
            self._matched(rule, var_name, value, caps)
        return matched

    def _candidate(self, rule: Rule, gi: int) -> bool:
        """False when the prefilter rules ``rule`` out; its group ``gi`` is scanned on first use."""
        pf = self.prefilter
        assert pf is not None  # group_of is empty without a prefilter
        if gi < 0:  # eligible but in no group (an empty @pm): never matches
            return False
        if gi not in self.scanned:
            self.scanned.add(gi)
            pf.scan(gi, self.t, self.candidates, self.gathered)
        return id(rule) in self.candidates

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
        if vkey is not None and t.removing_targets and t.exclusions(rule) is not rule.exclusions:
            vkey = None  # a ctl removed targets of this rule in this request: no sharing
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


def _transform_all(t: Transaction, rule: Rule, raws: Iterable[str]) -> list[str]:
    """``raws`` through the rule's transformations (batched, cached per request per chain)."""
    return transform_values(t.tcache, rule.transform_names, rule.transforms, list(raws))


def _skip(items: list[Rule | Marker], i: int, count: int) -> int:
    while count > 0 and i < len(items):
        if isinstance(items[i], Rule):
            count -= 1
        i += 1
    return i


__all__ = ["WafEngine", "WafSettings"]
