"""Load SecLang files (via msc-pyparser) into typed rules; list every construct we cannot execute.

msc-pyparser errors are translated into ConfigError here, the one module that calls it. Reads files
at load only; nothing here runs per request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msc_pyparser  # type: ignore[import-untyped,unused-ignore]

from garrison.errors import ConfigError
from garrison.waf.operators import Operator, UnsupportedOperator
from garrison.waf.rules import Ctl, Marker, Rule, SetVar, Unsupported, VarSpec
from garrison.waf.transforms import lookup as lookup_transform

PHASES = {"1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "request": 2, "response": 4, "logging": 5}

# Collections the engine fills from a request (anything else yields no values and is listed).
SUPPORTED_VARIABLES = frozenset(
    {
        "ARGS",
        "ARGS_NAMES",
        "ARGS_GET",
        "ARGS_GET_NAMES",
        "ARGS_POST",
        "ARGS_POST_NAMES",
        "ARGS_COMBINED_SIZE",
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
        "REQUEST_BODY_LENGTH",
        "REQBODY_PROCESSOR",
        "REQBODY_ERROR",
        "FILES",
        "FILES_NAMES",
        "FILES_SIZES",
        "FILES_COMBINED_SIZE",
        "MULTIPART_PART_HEADERS",
        "MULTIPART_STRICT_ERROR",
        "MULTIPART_UNMATCHED_BOUNDARY",
        "XML",
        "TX",
        "MATCHED_VAR",
        "MATCHED_VAR_NAME",
        "MATCHED_VARS",
        "MATCHED_VARS_NAMES",
        "REMOTE_ADDR",
        "UNIQUE_ID",
        "FULL_REQUEST_LENGTH",
        "ENV",
    }
)
RESPONSE_VARIABLES = frozenset(
    {
        "RESPONSE_BODY",
        "RESPONSE_HEADERS",
        "RESPONSE_HEADERS_NAMES",
        "RESPONSE_STATUS",
        "RESPONSE_PROTOCOL",
        "RESPONSE_CONTENT_TYPE",
    }
)
# Actions that are metadata or logging configuration: accepted, no effect on detection.
_INERT_ACTIONS = frozenset(
    {
        "ver",
        "rev",
        "accuracy",
        "maturity",
        "auditlog",
        "noauditlog",
        "status",
        "sanitiseMatched",
        "sanitiseArg",
        "sanitizeMatched",
        "sanitizeArg",
    }
)
_DISRUPTIVE = frozenset({"deny", "drop", "block", "pass", "allow", "redirect"})
_INERT_CTLS = frozenset({"auditengine", "auditlogparts", "debugloglevel"})
_KNOWN_CTLS = (
    frozenset(
        {
            "ruleremovebyid",
            "ruleremovebytag",
            "ruleremovetargetbyid",
            "ruleremovetargetbytag",
            "ruleengine",
            "requestbodyprocessor",
            "forcerequestbodyvariable",
            "requestbodyaccess",
        }
    )
    | _INERT_CTLS
)
_INERT_DIRECTIVES = frozenset({"Comment", "SecComponentSignature", "SecCollectionTimeout"})


@dataclass(frozen=True, slots=True)
class DefaultAction:
    """``SecDefaultAction`` of one phase: what ``block`` means and whether rules log."""

    disruptive: str = "pass"
    log: bool = True


@dataclass(slots=True)
class RuleSet:
    """Everything loaded: rules in file order (chains attached), markers, and what we cannot run."""

    items: list[Rule | Marker] = field(default_factory=list)
    defaults: dict[int, DefaultAction] = field(default_factory=dict)
    unsupported: list[Unsupported] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def rules(self) -> list[Rule]:
        return [r for r in self.items if isinstance(r, Rule)]


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; a directory adds its ``*.conf`` files in name order (as ``Include dir/*.conf``)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(p.glob("*.conf")))
        elif p.is_file():
            out.append(p)
        else:
            raise ConfigError(f"WAF rule path not found: {p}")
    return out


def parse_file(path: Path) -> list[dict[str, Any]]:
    parser = msc_pyparser.MSCParser()
    try:
        parser.parser.parse(path.read_text("utf-8", errors="surrogateescape"))
    except Exception as exc:  # msc-pyparser raises bare Exceptions on syntax errors
        raise ConfigError(f"{path}: SecLang parse error: {exc}") from exc
    lines: list[dict[str, Any]] = parser.configlines
    return lines


def _var_spec(name: str, part: str, negated: bool, counter: bool) -> VarSpec:
    coll = name.upper()
    if part.startswith("/") and part.endswith("/") and len(part) > 1:
        return VarSpec(coll, key_rx=re.compile(part[1:-1], re.IGNORECASE), exclude=negated, count=counter)
    return VarSpec(coll, key=part.lower() or None, exclude=negated, count=counter)


def parse_target(text: str) -> VarSpec:
    """``!ARGS:foo`` / ``&TX:x`` / ``REQUEST_COOKIES:/re/`` as written in ctl and update directives."""
    text = text.strip().strip("'\"")
    negated = text.startswith("!")
    counter = text.startswith("&")
    text = text.lstrip("!&")
    name, _, part = text.partition(":")
    return _var_spec(name, part, negated, counter)


class _Builder:
    def __init__(self, ruleset: RuleSet) -> None:
        self.rs = ruleset
        self.default_phase_actions: dict[int, DefaultAction] = ruleset.defaults
        self.chain_tail: Rule | None = None
        self.chain_head: Rule | None = None
        self.by_id: dict[int, Rule] = {}

    def note(self, rule: Rule, what: str) -> None:
        head = self.chain_head if self.chain_head is not None and not rule.id else rule
        self.rs.unsupported.append(Unsupported(head.id, rule.file, rule.line, what))

    def directive(self, d: dict[str, Any], path: Path) -> None:
        kind = d["type"]
        if kind in _INERT_DIRECTIVES:
            return
        if kind in ("SecRule", "SecAction"):
            self.rule(d, path)
        elif kind == "SecMarker":
            self.rs.items.append(Marker(d["arguments"][0]["argument"]))
        elif kind == "SecDefaultAction":
            acts = dict(part.partition(":")[::2] for part in d["arguments"][0]["argument"].split(","))
            phase = PHASES.get(str(acts.get("phase", "2")).lower(), 2)
            disruptive = next((a for a in acts if a in _DISRUPTIVE), "pass")
            self.default_phase_actions[phase] = DefaultAction(disruptive, "nolog" not in acts)
        elif kind == "SecRuleUpdateTargetById":
            args = [a["argument"] for a in d["arguments"]]
            for rid in self._ids(args[0]):
                target = self.by_id.get(rid)
                for spec in args[1].split("|"):
                    vs = parse_target(spec)
                    if target is None:
                        continue
                    if vs.exclude:
                        target.exclusions.append(vs)
                    else:
                        target.variables = (*target.variables, vs)
        elif kind in ("SecRuleRemoveById", "SecRuleRemoveByTag", "SecRuleRemoveByMsg"):
            args = [a["argument"] for a in d["arguments"]]
            self.remove(kind, args)
        else:
            self.rs.unsupported.append(
                Unsupported(0, path.name, int(d.get("lineno", 0)), f"directive {kind} ignored")
            )

    @staticmethod
    def _ids(text: str) -> list[int]:
        out: list[int] = []
        for part in text.replace(",", " ").split():
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1) if hi else [int(lo)])
        return out

    def remove(self, kind: str, args: list[str]) -> None:
        if kind == "SecRuleRemoveById":
            ids = {i for a in args for i in self._ids(a)}
            self.rs.items = [r for r in self.rs.items if not (isinstance(r, Rule) and r.id in ids)]
        else:
            needle = args[0]
            self.rs.items = [
                r
                for r in self.rs.items
                if not (
                    isinstance(r, Rule) and (needle in r.tags if kind.endswith("Tag") else r.msg == needle)
                )
            ]

    def rule(self, d: dict[str, Any], path: Path) -> None:
        acts: list[dict[str, Any]] = d["actions"]
        in_chain = self.chain_tail is not None
        rid = next((int(a["act_arg"]) for a in acts if a["act_name"] == "id"), 0)
        phase_arg = next((str(a["act_arg"]) for a in acts if a["act_name"] == "phase"), None)
        parent = self.chain_tail
        phase = parent.phase if parent is not None else PHASES.get((phase_arg or "2").lower(), 2)
        rule = Rule(rid, phase, path.name, int(d.get("lineno", 0)))
        if parent is None:
            self.chain_head = rule
        if d["type"] == "SecRule":
            self._targets(rule, d)
            self._operator(rule, d, path)
        self._actions(rule, acts, in_chain)
        if parent is not None:
            parent.chain = rule
        else:
            self.rs.items.append(rule)
            if rid:
                self.by_id[rid] = rule
        if rule.phase >= 3 and parent is None:
            self.note(rule, f"phase {rule.phase} (response/logging) rules are loaded but not executed")
        self.chain_tail = rule if any(a["act_name"] == "chain" for a in acts) else None

    def _targets(self, rule: Rule, d: dict[str, Any]) -> None:
        specs: list[VarSpec] = []
        for v in d["variables"]:
            spec = _var_spec(v["variable"], v["variable_part"], bool(v["negated"]), bool(v["counter"]))
            if spec.collection in RESPONSE_VARIABLES:
                if rule.phase < 3:
                    self.note(rule, f"variable {spec.collection} in a request phase")
            elif spec.collection not in SUPPORTED_VARIABLES:
                self.note(rule, f"variable {spec.collection} not supported (no values)")
            specs.append(spec)
        rule.variables = tuple(s for s in specs if not s.exclude)
        rule.exclusions = [s for s in specs if s.exclude]

    def _operator(self, rule: Rule, d: dict[str, Any], path: Path) -> None:
        name = str(d["operator"] or "@rx")
        arg = str(d["operator_argument"])
        try:
            rule.operator = Operator.compile(name, arg, bool(d["operator_negated"]), path.parent)
        except (UnsupportedOperator, ValueError) as exc:
            if rule.phase < 3:
                rule.disabled = str(exc)
                self.note(rule, f"{exc} (rule disabled)")

    def _actions(self, rule: Rule, acts: list[dict[str, Any]], in_chain: bool) -> None:
        names: list[str] = []
        setvars: list[SetVar] = []
        ctls: list[Ctl] = []
        tags: list[str] = []
        for a in acts:
            name, arg = a["act_name"], str(a["act_arg"])
            if name == "t":
                if arg.lower() == "none":
                    names.clear()
                else:
                    names.append(arg)
            elif name == "setvar":
                if a["act_arg_val"]:  # unquoted setvar:tx.a=1 arrives split at '='
                    arg = f"{arg}={a['act_arg_val']}"
                sv = parse_setvar(arg)
                if sv is None:
                    self.note(rule, f"setvar:{arg} (only TX is kept per transaction) ignored")
                else:
                    setvars.append(sv)
            elif name == "ctl":
                ctl = self._ctl(rule, a)
                if ctl is not None:
                    ctls.append(ctl)
            elif name in _DISRUPTIVE:
                rule.disruptive = name
                if name == "allow":
                    rule.allow_scope = arg
            elif name == "chain" or name in _INERT_ACTIONS or name in ("id", "phase"):
                continue
            elif name == "nolog":
                rule.log = False
            elif name == "log":
                rule.log = True
            elif name == "capture":
                rule.capture = True
            elif name == "multiMatch":
                rule.multi_match = True
            elif name == "skipAfter":
                rule.skip_after = arg
            elif name == "skip":
                rule.skip = int(arg)
            elif name == "msg":
                rule.msg = arg
            elif name == "logdata":
                rule.logdata = arg
            elif name == "severity":
                rule.severity = arg
            elif name == "tag":
                tags.append(arg)
            elif name in (
                "expirevar",
                "initcol",
                "setsid",
                "setuid",
                "setenv",
                "exec",
                "deprecatevar",
                "append",
                "prepend",
                "xmlns",
                "proxy",
            ):
                self.note(rule, f"action {name}:{arg} not supported (ignored)")
            else:
                self.note(rule, f"unknown action {name} ignored")
        fns = []
        for n in names:
            fn = lookup_transform(n)
            if fn is None:
                rule.disabled = f"transformation t:{n} not implemented"
                self.note(rule, f"{rule.disabled} (rule disabled)")
            else:
                fns.append(fn)
        rule.transforms = tuple(fns)
        rule.transform_names = tuple(n.lower() for n in names)
        rule.setvars = tuple(setvars)
        rule.ctls = tuple(ctls)
        rule.tags = tuple(tags)

    def _ctl(self, rule: Rule, a: dict[str, Any]) -> Ctl | None:
        option = str(a["act_arg"])
        value = str(a["act_arg_val"])
        if "=" in option and not value:  # some quoting styles keep "opt=val" together
            option, _, value = option.partition("=")
        if option.lower() not in _KNOWN_CTLS:
            self.note(rule, f"ctl:{option} not supported (ignored)")
            return None
        target = None
        if a["act_arg_val_param"]:
            target = parse_target(f"{a['act_arg_val_param']}:{a['act_arg_val_param_val']}".rstrip(":"))
        return Ctl(option.lower(), value, target)


_SETVAR = re.compile(r"^(!)?\s*([A-Za-z_]+)\.([^=]+?)\s*(?:=([+-]?)(.*))?$", re.DOTALL)


def parse_setvar(arg: str) -> SetVar | None:
    """``tx.a=1`` / ``tx.a=+%{tx.b}`` / ``!tx.a``; None for collections other than TX."""
    m = _SETVAR.match(arg.strip().strip("'"))
    if m is None or m.group(2).lower() != "tx":
        return None
    delete, _, name, sign, value = m.groups()
    if delete:
        return SetVar(name.lower(), "del", "")
    if value is None:
        return SetVar(name.lower(), "=", "1")
    return SetVar(name.lower(), sign or "=", value)


def load_rules(paths: Sequence[str | Path]) -> RuleSet:
    """Parse and compile every rule in ``paths`` (files, or directories of ``*.conf``) in order."""
    rs = RuleSet(files=expand_paths(paths))
    builder = _Builder(rs)
    for path in rs.files:
        for d in parse_file(path):
            builder.directive(d, path)
    # Defaults fill the gaps: a rule without an explicit disruptive action takes its phase's default.
    for item in rs.items:
        if isinstance(item, Rule):
            default = rs.defaults.get(item.phase, DefaultAction())
            if item.disruptive in (None, "block"):
                item.disruptive = default.disruptive if item.disruptive == "block" else None
    return rs


__all__ = ["DefaultAction", "RuleSet", "expand_paths", "load_rules", "parse_setvar", "parse_target"]
