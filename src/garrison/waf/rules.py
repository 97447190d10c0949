"""Typed, compiled SecLang rules: what the loader produces and the engine executes. No I/O here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from garrison.waf.operators import Operator
from garrison.waf.transforms import Transform


@dataclass(frozen=True, slots=True)
class VarSpec:
    """One target: ``[!|&]COLLECTION[:key|:/regex/]``; ``key`` is lower-cased (matched case-insensitively)."""

    collection: str
    key: str | None = None
    key_rx: re.Pattern[str] | None = None
    exclude: bool = False
    count: bool = False

    def selects(self, key: str) -> bool:
        if self.key_rx is not None:
            return self.key_rx.search(key) is not None
        return self.key is None or self.key == key.lower()

    def __str__(self) -> str:
        prefix = "!" if self.exclude else "&" if self.count else ""
        part = f":/{self.key_rx.pattern}/" if self.key_rx is not None else f":{self.key}" if self.key else ""
        return f"{prefix}{self.collection}{part}"


@dataclass(frozen=True, slots=True)
class SetVar:
    """``setvar:tx.name=value`` (op ``=``), ``=+``, ``=-``, or ``!tx.name`` (op ``del``)."""

    name: str
    op: str
    value: str


@dataclass(frozen=True, slots=True)
class Ctl:
    """``ctl:option=value[;TARGET:key]`` changing this transaction only."""

    option: str
    value: str
    target: VarSpec | None = None


@dataclass(slots=True)
class Rule:
    """A SecRule / SecAction; ``chain`` is the next rule of a chain (whose own id is 0)."""

    id: int
    phase: int
    file: str
    line: int
    variables: tuple[VarSpec, ...] = ()
    operator: Operator | None = None  # None: SecAction, always matches once
    transforms: tuple[Transform, ...] = ()
    transform_names: tuple[str, ...] = ()
    multi_match: bool = False
    capture: bool = False
    chain: Rule | None = None
    setvars: tuple[SetVar, ...] = ()
    ctls: tuple[Ctl, ...] = ()
    disruptive: str | None = None  # deny, drop, block, pass, allow, redirect
    allow_scope: str = ""
    log: bool = True
    skip_after: str | None = None
    skip: int = 0
    msg: str = ""
    logdata: str = ""
    severity: str | None = None
    tags: tuple[str, ...] = ()
    disabled: str | None = None  # why this rule cannot run (listed as unsupported at load)
    exclusions: list[VarSpec] = field(default_factory=list)  # SecRuleUpdateTargetById "!..."

    def __repr__(self) -> str:
        return f"<Rule {self.id} phase={self.phase} {self.file}:{self.line}>"


@dataclass(frozen=True, slots=True)
class Marker:
    """``SecMarker NAME``: a ``skipAfter:NAME`` target, present in every phase."""

    name: str


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A construct the engine loaded but cannot execute as written; listed at load, never hidden."""

    rule_id: int
    file: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} rule {self.rule_id}: {self.what}"


__all__ = ["Ctl", "Marker", "Rule", "SetVar", "Unsupported", "VarSpec"]
