"""Turn the `policies:` of garrison.yaml into a ``PolicyIndex``, once, at config load.

Every name is resolved here (service → SPIFFE ID, issuer name → its ``iss``); anything that does not
resolve is a ``PolicyError`` naming the rule, so nothing is looked up by name per request.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from garrison.config.models import GarrisonConfig, PolicyRule, PolicyWhen
from garrison.errors import PolicyError
from garrison.policy.index import PolicyIndex
from garrison.policy.model import ClaimCondition, CompiledRule, Network, claim_key

_SPIFFE_ID = re.compile(r"spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]+)*")  # SPIFFE-ID §2.1, §2.2


def _is_spiffe_id(s: str) -> bool:
    # SPIFFE-ID §2.2: path segments are never "." or ".."; no trailing "/".
    return _SPIFFE_ID.fullmatch(s) is not None and not {".", ".."} & set(s.split("/")[3:])


def compile_policies(cfg: GarrisonConfig) -> PolicyIndex:
    """Compile every rule of ``cfg.policies`` (in config order) into one index."""
    route_names = frozenset(r.name for r in cfg.routes)
    issuer_iss = {i.name: i.issuer for i in cfg.issuers}
    return PolicyIndex(
        [_compile_rule(cfg, rule, order, route_names, issuer_iss) for order, rule in enumerate(cfg.policies)]
    )


def _compile_rule(
    cfg: GarrisonConfig, rule: PolicyRule, order: int, route_names: frozenset[str], issuer_iss: dict[str, str]
) -> CompiledRule:
    def fail(what: str) -> PolicyError:
        return PolicyError(f"policy {rule.name!r}: {what}")

    for rn in rule.routes:
        if rn not in route_names:
            raise fail(f"unknown route {rn!r}")

    f = rule.from_
    principals: set[str] = set()
    for s in f.services:
        if s.startswith("spiffe://"):
            if not _is_spiffe_id(s):
                raise fail(f"malformed SPIFFE ID {s!r}")
            principals.add(s)
        elif s in cfg.services:
            principals.add(cfg.spiffe_id(s))
        else:
            raise fail(f"unknown service {s!r}")
    for u in f.users:
        if u.issuer not in issuer_iss:
            raise fail(f"unknown issuer {u.issuer!r} for user {u.subject!r}")
        principals.add(f"{issuer_iss[u.issuer]}#{u.subject}")
    for i in f.issuers:
        if i not in issuer_iss:
            raise fail(f"unknown issuer {i!r}")
    if not (principals or f.issuers or f.authenticated or f.any):
        raise fail("`from` names no one")

    exact: set[str] = set()
    prefixes: list[str] = []
    for p in rule.paths:
        if p == "/**":  # every path: same as no path condition
            exact.clear()
            prefixes.clear()
            break
        if p.endswith("/**"):
            prefixes.append(p[:-3])
        else:
            exact.add(p)

    return CompiledRule(
        name=rule.name,
        order=order,
        effect=rule.effect,
        routes=frozenset(rule.routes),
        paths=tuple(rule.paths),
        exact_paths=frozenset(exact),
        prefixes=tuple(dict.fromkeys(prefixes)),
        methods=frozenset(m.upper() for m in rule.methods),
        principals=frozenset(principals),
        issuers=frozenset(f.issuers),
        authenticated=f.authenticated,
        anyone=f.any,
        claims=_claims(rule.when),
        scopes=frozenset(rule.when.scopes),
        networks=_networks(rule.when, fail),
        who_text=_who_text(rule),
    )


def _claims(when: PolicyWhen) -> tuple[ClaimCondition, ...]:
    out = []
    for name, wanted in when.claims.items():
        accepted = wanted if isinstance(wanted, list) else [wanted]
        out.append(ClaimCondition(name, frozenset(claim_key(v) for v in accepted)))
    return tuple(out)


def _networks(when: PolicyWhen, fail: Callable[[str], PolicyError]) -> tuple[Network, ...]:
    out = []
    for text in when.source_cidrs:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise fail(f"invalid source CIDR {text!r}") from exc
        out.append(Network(text, net.version, int(net.network_address), int(net.netmask)))
    return tuple(out)


def _who_text(rule: PolicyRule) -> str:
    f = rule.from_
    parts = []
    if f.any:
        parts.append("anyone")
    if f.authenticated:
        parts.append("any authenticated")
    if f.services:
        parts.append("services " + ", ".join(f.services))
    if f.users:
        parts.append("users " + ", ".join(f"{u.issuer}:{u.subject}" for u in f.users))
    if f.issuers:
        parts.append("issuers " + ", ".join(f.issuers))
    return " or ".join(parts)


__all__ = ["compile_policies"]
