"""The policy index: rules bucketed by route, then by who, then by path, built once at load.

A decision looks only at the rules filed under its route (and the any-route bucket), its principal,
its issuer, its claim values, "authenticated" and "anyone", and under its path and the path's
ancestors, so its cost does not grow with the number of rules. No I/O; ``decide`` builds only a few
short lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from garrison.pipeline.context import Identity
from garrison.policy.model import NO_MATCH, PUBLIC_ALLOW, CompiledRule, Decision, claim_key

Rules = list[CompiledRule]  # filled in config order at build, never mutated after
_MAX_CUTS = 6


class _ByPath:
    """Rules of one (route, who) bucket, filed by exact path, by prefix, or as applying anywhere."""

    __slots__ = ("anywhere", "cuts", "exact", "prefixes")

    def __init__(self) -> None:
        self.anywhere: Rules = []
        self.exact: dict[str, Rules] = {}
        self.prefixes: dict[str, Rules] = {}  # "/x" for "/x/**"
        # The distinct prefix lengths: with few, probing ``path[:cut]`` beats listing the path's parents.
        self.cuts: tuple[int, ...] | None = ()

    def add(self, rule: CompiledRule) -> None:
        if rule.any_path or "" in rule.prefixes:
            self.anywhere.append(rule)
            return
        for p in rule.exact_paths:
            self.exact.setdefault(p, []).append(rule)
        for p in rule.prefixes:
            self.prefixes.setdefault(p, []).append(rule)
            if self.cuts is not None and len(p) not in self.cuts:
                cuts = tuple(sorted((*self.cuts, len(p))))
                self.cuts = cuts if len(cuts) <= _MAX_CUTS else None


class _ByWho:
    """Rules of one route bucket, filed by the `from` alternative that admits a request.

    A rule whose broad `from` (anyone, authenticated, an issuer) is narrowed by claims is filed by the
    accepted values of its first claim instead, and re-checks its `from` when evaluated.
    """

    __slots__ = ("anyone", "authenticated", "claims", "issuers", "principals")

    def __init__(self) -> None:
        self.anyone: _ByPath | None = None
        self.authenticated: _ByPath | None = None
        self.principals: dict[str, _ByPath] = {}
        self.issuers: dict[str, _ByPath] = {}
        self.claims: dict[str, dict[object, _ByPath]] = {}  # claim name -> claim_key(value) -> rules

    def add(self, rule: CompiledRule) -> None:
        if rule.claims and (rule.anyone or rule.authenticated or rule.issuers):
            first = rule.claims[0]
            by_value = self.claims.setdefault(first.name, {})
            for key in first.keys:
                by_value.setdefault(key, _ByPath()).add(rule)
            return
        # A rule admitting anyone (or any authenticated identity) needs no narrower bucket.
        if rule.anyone:
            self.anyone = self.anyone or _ByPath()
            self.anyone.add(rule)
            return
        if rule.authenticated:
            self.authenticated = self.authenticated or _ByPath()
            self.authenticated.add(rule)
            return
        for p in rule.principals:
            self.principals.setdefault(p, _ByPath()).add(rule)
        for i in rule.issuers:
            self.issuers.setdefault(i, _ByPath()).add(rule)


def _ancestors(path: str) -> list[str]:
    """The keys a prefix rule covering ``path`` can be filed under: the path, then each parent."""
    out = [path]
    i = len(path)
    while (i := path.rfind("/", 0, i)) > 0:
        out.append(path[:i])
    return out


class PolicyIndex:
    """Compiled policies: deny > allow (first in config order) > public route > default deny."""

    __slots__ = ("_any_route", "_by_route", "rules")

    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        self.rules: tuple[CompiledRule, ...] = tuple(sorted(rules, key=lambda r: r.order))
        self._by_route: dict[str, _ByWho] = {}
        self._any_route: _ByWho | None = None
        for rule in self.rules:  # in order, so every bucket's list is sorted by `order`
            if not rule.routes:
                self._any_route = self._any_route or _ByWho()
                self._any_route.add(rule)
            for name in rule.routes:
                self._by_route.setdefault(name, _ByWho()).add(rule)

    def decide(
        self,
        *,
        route: str,
        public: bool,
        method: str,
        path: str,
        identity: Identity | None,
        client_ip: str,
    ) -> Decision:
        """Authorize one request. ``path`` is the normalized path; ``route`` the matched route's name."""
        buckets: list[_ByPath] = []
        for who in (self._by_route.get(route), self._any_route):
            if who is None:
                continue
            if who.anyone is not None:
                buckets.append(who.anyone)
            if identity is not None:
                if who.authenticated is not None:
                    buckets.append(who.authenticated)
                b = who.principals.get(identity.principal)
                if b is not None:
                    buckets.append(b)
                b = who.issuers.get(identity.issuer)
                if b is not None:
                    buckets.append(b)
                for name, by_value in who.claims.items():
                    value = identity.claims.get(name)
                    for v in value if isinstance(value, list) else (value,):
                        b = by_value.get(claim_key(v))
                        if b is not None:
                            buckets.append(b)

        groups: list[Rules] = []
        ancestors: list[str] | None = None
        for b in buckets:
            if b.anywhere:
                groups.append(b.anywhere)
            g = b.exact.get(path)
            if g is not None:
                groups.append(g)
            if not b.prefixes:
                continue
            if b.cuts is not None:
                n = len(path)
                for cut in b.cuts:
                    if cut > n:
                        break
                    if cut == n or path[cut] == "/":
                        g = b.prefixes.get(path[:cut])
                        if g is not None:
                            groups.append(g)
                continue
            if ancestors is None:
                ancestors = _ancestors(path)
            for a in ancestors:
                g = b.prefixes.get(a)
                if g is not None:
                    groups.append(g)

        deny: CompiledRule | None = None
        allow: CompiledRule | None = None
        for g in groups:
            for r in g:
                if r.deny:
                    if deny is not None and r.order >= deny.order:
                        break  # the group is sorted: no earlier deny left in it
                    if r.unconditional or r.conditions_hold(method, identity, client_ip):
                        deny = r
                elif (
                    deny is None
                    and (allow is None or r.order < allow.order)
                    and (r.unconditional or r.conditions_hold(method, identity, client_ip))
                ):
                    allow = r
        if deny is not None:
            return deny.decision
        if allow is not None:
            return allow.decision
        return PUBLIC_ALLOW if public else NO_MATCH

    def rules_for_route(self, route: str) -> Sequence[CompiledRule]:
        """Every rule that can apply on ``route``, in config order (for explain)."""
        return [r for r in self.rules if r.covers_route(route)]

    def __repr__(self) -> str:
        n_deny = sum(r.deny for r in self.rules)
        return f"<PolicyIndex {len(self.rules)} rules ({n_deny} deny), {len(self._by_route)} routes>"


__all__ = ["PolicyIndex"]
