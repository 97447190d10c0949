"""The reference evaluator: the policy semantics read straight off the config, one rule after another.

Slow on purpose and written apart from the compiler and the index, so tests can check the index
against it (STYLE §11). Never used to serve requests.
"""

from __future__ import annotations

import ipaddress

from garrison.config.models import GarrisonConfig, PolicyRule
from garrison.pipeline.context import Identity
from garrison.policy.model import Decision
from garrison.reasons import Reason


def naive_decide(
    cfg: GarrisonConfig,
    *,
    route: str,
    public: bool,
    method: str,
    path: str,
    identity: Identity | None,
    client_ip: str,
) -> Decision:
    """Decide by scanning ``cfg.policies`` in order: deny > first allow > public route > default deny."""
    matching = [
        rule for rule in cfg.policies if _rule_matches(cfg, rule, route, method, path, identity, client_ip)
    ]
    denies = [rule for rule in matching if rule.effect == "deny"]
    allows = [rule for rule in matching if rule.effect == "allow"]
    if denies:
        return Decision(False, Reason.POLICY_DENY, denies[0].name)
    if allows:
        return Decision(True, Reason.ALLOWED, allows[0].name)
    if public:
        return Decision(True, Reason.ALLOWED, None)
    return Decision(False, Reason.POLICY_NO_MATCH, None)


def _rule_matches(
    cfg: GarrisonConfig,
    rule: PolicyRule,
    route: str,
    method: str,
    path: str,
    identity: Identity | None,
    client_ip: str,
) -> bool:
    if rule.routes and route not in rule.routes:
        return False
    if rule.paths and not any(_path_matches(p, path) for p in rule.paths):
        return False
    if rule.methods and method not in rule.methods:
        return False
    if not _who_matches(cfg, rule, identity):
        return False
    when = rule.when
    for name, wanted in when.claims.items():
        if identity is None or name not in identity.claims:
            return False
        if not _claim_matches(identity.claims[name], wanted):
            return False
    for scope in when.scopes:
        if identity is None or scope not in identity.scopes:
            return False
    if when.source_cidrs:
        try:
            addr = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if not any(addr in ipaddress.ip_network(c, strict=False) for c in when.source_cidrs):
            return False
    return True


def _path_matches(pattern: str, path: str) -> bool:
    if pattern.endswith("/**"):
        base = pattern[: -len("/**")]
        return base == "" or path == base or path.startswith(base + "/")
    return path == pattern


def _who_matches(cfg: GarrisonConfig, rule: PolicyRule, identity: Identity | None) -> bool:
    f = rule.from_
    if f.any:
        return True
    if identity is None:
        return False
    if f.authenticated:
        return True
    for s in f.services:
        spiffe_id = s if s.startswith("spiffe://") else cfg.spiffe_id(s)
        if identity.principal == spiffe_id:
            return True
    for u in f.users:
        iss = next(i.issuer for i in cfg.issuers if i.name == u.issuer)
        if identity.principal == f"{iss}#{u.subject}":
            return True
    return identity.issuer in f.issuers


def _claim_matches(actual: object, wanted: object) -> bool:
    accepted = wanted if isinstance(wanted, list) else [wanted]
    values = actual if isinstance(actual, list) else [actual]
    return any(_same_value(v, a) for v in values for a in accepted)


def _same_value(v: object, a: object) -> bool:
    if isinstance(v, bool) or isinstance(a, bool):
        return isinstance(v, bool) and isinstance(a, bool) and v == a
    if isinstance(v, dict | list):
        return False
    return v == a


__all__ = ["naive_decide"]
