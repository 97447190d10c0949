"""``garrison policy explain``: every rule on a route, whether it matched and, if not, why not.

Reads the same compiled rules the index serves from; the decision shown is the index's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from garrison.pipeline.context import Identity
from garrison.policy.index import PolicyIndex
from garrison.policy.model import NO_MATCH, PUBLIC_ALLOW, CompiledRule, Decision, parse_ip


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """One rule checked against the request: ``failed`` lists the conditions that did not hold."""

    rule: str
    effect: str
    failed: tuple[str, ...]

    @property
    def matched(self) -> bool:
        return not self.failed


@dataclass(frozen=True, slots=True)
class Explanation:
    route: str
    public: bool
    method: str
    path: str
    identity: Identity | None
    client_ip: str
    traces: tuple[RuleTrace, ...]  # rules that apply to the route, in config order
    decision: Decision


def explain(
    policies: PolicyIndex | Sequence[CompiledRule],
    *,
    route: str,
    public: bool,
    method: str,
    path: str,
    identity: Identity | None,
    client_ip: str,
) -> Explanation:
    """Trace every rule that applies to ``route``; the decision is the index's (or, for bare rules, the same
    precedence applied to the traces)."""
    rules = policies.rules if isinstance(policies, PolicyIndex) else sorted(policies, key=lambda r: r.order)
    on_route = [r for r in rules if r.covers_route(route)]
    traces: list[RuleTrace] = []
    for r in on_route:
        failed = why_not(r, method=method, path=path, identity=identity, client_ip=client_ip)
        traces.append(RuleTrace(r.name, r.effect, failed))
    if isinstance(policies, PolicyIndex):
        decision = policies.decide(
            route=route, public=public, method=method, path=path, identity=identity, client_ip=client_ip
        )
    else:
        decision = _decide_from(on_route, traces, public)
    return Explanation(route, public, method, path, identity, client_ip, tuple(traces), decision)


def _decide_from(rules: Sequence[CompiledRule], traces: Sequence[RuleTrace], public: bool) -> Decision:
    matched = [r for r, t in zip(rules, traces, strict=True) if t.matched]
    for effect in ("deny", "allow"):
        for r in matched:
            if r.effect == effect:
                return r.decision
    return PUBLIC_ALLOW if public else NO_MATCH


def why_not(
    rule: CompiledRule, *, method: str, path: str, identity: Identity | None, client_ip: str
) -> tuple[str, ...]:
    """Every condition of ``rule`` (route aside) the request fails; empty when the rule matches."""
    failed: list[str] = []
    if not rule.covers_path(path):
        failed.append(f"path {path} is not one of {', '.join(rule.paths)}")
    if rule.methods and method not in rule.methods:
        failed.append(f"method {method} is not one of {', '.join(sorted(rule.methods))}")
    if not rule.admits(identity):
        who = "anonymous" if identity is None else f"{identity.principal} (issuer {identity.issuer})"
        failed.append(f"from: {who} is not {rule.who_text}")
    claims = identity.claims if identity is not None else {}
    for c in rule.claims:
        if c.name not in claims:
            failed.append(f"claim {c.name} is missing")
        elif not c.accepts(claims[c.name]):
            failed.append(f"claim {c.name}={claims[c.name]!r} is not accepted")
    missing = sorted(rule.scopes - (identity.scopes if identity is not None else frozenset()))
    if missing:
        failed.append(f"scope(s) missing: {', '.join(missing)}")
    if rule.networks:
        ip = parse_ip(client_ip)
        if ip is None or not any(n.contains(ip) for n in rule.networks):
            cidrs = ", ".join(n.text for n in rule.networks)
            failed.append(f"client {client_ip} is not in {cidrs}")
    return tuple(failed)


def format_explanation(ex: Explanation) -> str:
    """Human-readable lines: the request, one line per rule, then the decision."""
    who = "anonymous" if ex.identity is None else f"{ex.identity.principal} ({ex.identity.kind})"
    lines = [
        f"request: {ex.method} {ex.path} on route {ex.route}{' (public)' if ex.public else ''}"
        f" from {who} at {ex.client_ip}"
    ]
    if not ex.traces:
        lines.append("  no rule applies to this route")
    for t in ex.traces:
        verdict = "MATCH" if t.matched else "no match: " + "; ".join(t.failed)
        lines.append(f"  {t.effect:<5} {t.rule}: {verdict}")
    d = ex.decision
    outcome = "ALLOW" if d.allowed else f"DENY {d.reason.status}"
    if d.rule_id is not None:
        by = f"rule {d.rule_id}"
    elif d.allowed:
        by = "public route, no rule denies"
    else:
        by = "no allow rule matched (default deny)"
    lines.append(f"decision: {outcome} {d.reason.value} by {by}")
    return "\n".join(lines)


__all__ = ["Explanation", "RuleTrace", "explain", "format_explanation", "why_not"]
