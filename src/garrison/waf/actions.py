"""Per-transaction state and the non-disruptive actions: setvar, capture, ctl, macro expansion.

One ``Transaction`` lives for one ``inspect()`` call and is never shared. No I/O here.
"""

from __future__ import annotations

import re

from garrison.waf.operators import Captures
from garrison.waf.rules import Ctl, Rule, SetVar, VarSpec
from garrison.waf.variables import Items, RequestData

_MACRO = re.compile(r"%\{([^}]+)\}")
_NUM = re.compile(r"\s*([+-]?\d+)")


def to_int(value: str) -> int:
    m = _NUM.match(value)
    return int(m.group(1)) if m else 0


class Transaction:
    """TX collection, MATCHED_VAR(S), ctl state and the transformation cache of one request."""

    __slots__ = (
        "body_access",
        "data",
        "engine_mode",
        "force_body",
        "matched_var",
        "matched_var_name",
        "matched_vars",
        "processor",
        "removed_ids",
        "removed_ranges",
        "removed_tags",
        "removed_targets",
        "removed_targets_by_tag",
        "removing",
        "removing_targets",
        "rule",
        "tcache",
        "tx",
        "vcache",
    )

    def __init__(self, data: RequestData, tx: dict[str, str], engine_mode: str) -> None:
        self.data = data
        self.tx = tx
        self.engine_mode = engine_mode
        self.processor = data.body_processor
        self.force_body = False
        self.body_access = True
        self.matched_var = ""
        self.matched_var_name = ""
        self.matched_vars: Items = []
        self.removed_ids: set[int] = set()
        self.removed_ranges: list[tuple[int, int]] = []
        self.removed_tags: set[str] = set()
        self.removed_targets: dict[int, list[VarSpec]] = {}
        self.removed_targets_by_tag: list[tuple[str, VarSpec]] = []
        self.rule: Rule | None = None
        self.tcache: dict[tuple[str, ...], dict[str, str]] = {}  # chain (prefix) -> raw -> value
        # interned (rule.variables, transform_names) -> that rule's (name, transformed value) list; holds only
        # request collections, so it is cleared when the body is processed (ARGS etc. change then).
        self.vcache: dict[int, Items] = {}
        self.removing = False  # any ruleRemoveById/-ByTag so far (is_removed fast path)
        self.removing_targets = False  # any ruleRemoveTargetById/-ByTag so far

    # -- collections -----------------------------------------------------------------------
    def collection(self, name: str) -> Items:
        if name == "TX":
            return list(self.tx.items())
        if name == "MATCHED_VARS":
            return self.matched_vars
        if name == "MATCHED_VARS_NAMES":
            return [(k, k) for k, _ in self.matched_vars]
        if name == "MATCHED_VAR":
            return [("", self.matched_var)]
        if name == "MATCHED_VAR_NAME":
            return [("", self.matched_var_name)]
        return self.data.coll.get(name, [])

    def is_removed(self, rule: Rule) -> bool:
        if not self.removing:
            return False
        rid = rule.id
        if rid in self.removed_ids or any(lo <= rid <= hi for lo, hi in self.removed_ranges):
            return True
        return bool(self.removed_tags) and any(t in self.removed_tags for t in rule.tags)

    def exclusions(self, rule: Rule) -> list[VarSpec]:
        if not self.removing_targets:
            return rule.exclusions
        extra = self.removed_targets.get(rule.id)
        by_tag = [s for tag, s in self.removed_targets_by_tag if tag in rule.tags]
        if not extra and not by_tag:
            return rule.exclusions
        return [*rule.exclusions, *(extra or ()), *by_tag]

    # -- macros ------------------------------------------------------------------------------
    def expand(self, text: str) -> str:
        if "%{" not in text:
            return text
        return _MACRO.sub(lambda m: self._macro(m.group(1)), text)

    def _macro(self, name: str) -> str:
        coll, _, key = name.partition(".")
        coll = coll.upper()
        if coll == "TX":
            return self.tx.get(key.lower(), "")
        if coll == "RULE":
            rule = self.rule
            if rule is None:
                return ""
            return {"id": str(rule.id), "msg": rule.msg, "severity": rule.severity or ""}.get(key.lower(), "")
        if coll == "REQBODY_ERROR_MSG":
            return self.data.body_error
        lkey = key.lower()
        for k, v in self.collection(coll):
            if not key or k.lower() == lkey:
                return v
        return ""

    # -- actions -----------------------------------------------------------------------------
    def capture(self, caps: Captures) -> None:
        for i, value in enumerate(caps[:10]):
            self.tx[str(i)] = value

    def setvar(self, sv: SetVar) -> None:
        name = self.expand(sv.name).lower() if "%{" in sv.name else sv.name
        if sv.op == "del":
            self.tx.pop(name, None)
            return
        value = self.expand(sv.value)
        if sv.op == "=":
            self.tx[name] = value
        elif sv.op == "+":
            self.tx[name] = str(to_int(self.tx.get(name, "0")) + to_int(value))
        else:
            self.tx[name] = str(to_int(self.tx.get(name, "0")) - to_int(value))

    def ctl(self, c: Ctl) -> None:
        opt, value = c.option, self.expand(c.value)
        if opt == "ruleremovebyid":
            for part in value.replace(",", " ").split():
                lo, _, hi = part.partition("-")
                if hi:
                    self.removed_ranges.append((int(lo), int(hi)))
                else:
                    self.removed_ids.add(int(lo))
            self.removing = True
        elif opt == "ruleremovebytag":
            self.removed_tags.add(value)
            self.removing = True
        elif opt == "ruleremovetargetbyid" and c.target is not None:
            self.removing_targets = True
            spec = VarSpec(c.target.collection, c.target.key, c.target.key_rx, exclude=True)
            for part in value.split(","):
                lo, _, hi = part.partition("-")
                for rid in range(int(lo), int(hi or lo) + 1):
                    self.removed_targets.setdefault(rid, []).append(spec)
        elif opt == "ruleremovetargetbytag" and c.target is not None:
            spec = VarSpec(c.target.collection, c.target.key, c.target.key_rx, exclude=True)
            self.removed_targets_by_tag.append((value, spec))
            self.removing_targets = True
        elif opt == "ruleengine":
            self.engine_mode = {"on": "On", "off": "Off", "detectiononly": "DetectionOnly"}.get(
                value.lower(), self.engine_mode
            )
        elif opt == "requestbodyprocessor":
            self.processor = value.upper()
        elif opt == "forcerequestbodyvariable":
            self.force_body = value.lower() == "on"
        elif opt == "requestbodyaccess":
            self.body_access = value.lower() == "on"


__all__ = ["Transaction", "to_int"]
