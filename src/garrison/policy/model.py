"""The compiled form of a policy rule and the decision it yields. Plain values: no I/O, no pydantic.

A ``CompiledRule`` has its names already resolved (service → SPIFFE ID, user → ``iss#sub``), so
checking it against a request is set lookups and integer arithmetic only.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Literal

from garrison.pipeline.context import Identity
from garrison.reasons import Reason

Effect = Literal["allow", "deny"]
_MAPPED_V4 = 0xFFFF  # ::ffff:a.b.c.d (RFC 4291 §2.5.5.2) is matched as the IPv4 address a.b.c.d
_PARSED: dict[str, tuple[int, int] | None] = {}  # client IPs seen lately; cleared when full
_PARSED_MAX = 4096
_UNSEEN = (0, 0)


def parse_ip(text: str) -> tuple[int, int] | None:
    """``(version, address as int)``, an IPv4-mapped IPv6 address as IPv4; None if not an IP literal."""
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError):
        pass
    try:  # a link-local peer may carry a zone ("fe80::1%eth0", RFC 4007 §11); the zone is not matched
        n = int.from_bytes(socket.inet_pton(socket.AF_INET6, text.partition("%")[0]), "big")
    except (OSError, ValueError):
        return None
    if n >> 32 == _MAPPED_V4:
        return 4, n & 0xFFFFFFFF
    return 6, n


def parse_ip_cached(text: str) -> tuple[int, int] | None:
    """``parse_ip`` behind a small bounded memo: the same clients come back, parsing costs ~0.5 µs."""
    ip = _PARSED.get(text, _UNSEEN)
    if ip is _UNSEEN:
        ip = parse_ip(text)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[text] = ip
    return ip


@dataclass(frozen=True, slots=True)
class Network:
    """A CIDR as integers: ``address & mask == base``. ``text`` is the config spelling."""

    text: str
    version: int
    base: int
    mask: int

    def contains(self, ip: tuple[int, int]) -> bool:
        return ip[0] == self.version and ip[1] & self.mask == self.base


_TRUE = ("json", True)  # JSON true and false as keys that cannot equal a number (True == 1 in Python)
_FALSE = ("json", False)


def claim_key(value: object) -> object:
    """A claim value as a set/dict key: scalars compare by ``==`` except booleans; None for objects/lists."""
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    if isinstance(value, str | int | float):
        return value
    return None


@dataclass(frozen=True, slots=True)
class ClaimCondition:
    """``claims: {name: value | [values]}``: ``keys`` are the accepted values as ``claim_key``s.

    A list-valued claim matches if any element is accepted.
    """

    name: str
    keys: frozenset[object]

    def accepts(self, actual: object) -> bool:
        if isinstance(actual, list):
            return any(claim_key(v) in self.keys for v in actual)
        return claim_key(actual) in self.keys


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of authorization: ``rule_id`` is the deciding rule (None for default deny / public)."""

    allowed: bool
    reason: Reason
    rule_id: str | None


PUBLIC_ALLOW = Decision(True, Reason.ALLOWED, None)
NO_MATCH = Decision(False, Reason.POLICY_NO_MATCH, None)


@dataclass(frozen=True, slots=True, repr=False)
class CompiledRule:
    """One rule, names resolved. Empty ``routes``/``methods`` mean any; ``any_path`` means no path limit.

    Who (``principals``, ``issuers``, ``authenticated``, ``anyone``) are alternatives; the ``when``
    conditions (``claims``, ``scopes``, ``networks``) are all required.
    """

    name: str
    order: int  # position in config; the first matching allow decides
    effect: Effect
    routes: frozenset[str] = frozenset()
    paths: tuple[str, ...] = ()  # config spelling, for explain
    exact_paths: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()  # "/x" for "/x/**"
    methods: frozenset[str] = frozenset()
    principals: frozenset[str] = frozenset()  # SPIFFE IDs and "iss#sub"
    issuers: frozenset[str] = frozenset()  # issuer names
    authenticated: bool = False
    anyone: bool = False
    claims: tuple[ClaimCondition, ...] = ()
    scopes: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()
    who_text: str = ""  # the `from` clause as written, for explain
    # Derived, for the hot path:
    deny: bool = field(init=False, compare=False)
    unconditional: bool = field(init=False, compare=False)  # no method or `when` condition
    decision: Decision = field(init=False, compare=False)

    def __post_init__(self) -> None:
        deny = self.effect == "deny"
        object.__setattr__(self, "deny", deny)
        object.__setattr__(
            self, "unconditional", not (self.methods or self.claims or self.scopes or self.networks)
        )
        reason = Reason.POLICY_DENY if deny else Reason.ALLOWED
        object.__setattr__(self, "decision", Decision(not deny, reason, self.name))

    @property
    def any_path(self) -> bool:
        return not self.exact_paths and not self.prefixes

    def covers_route(self, route: str) -> bool:
        return not self.routes or route in self.routes

    def covers_path(self, path: str) -> bool:
        if self.any_path or path in self.exact_paths:
            return True
        return any(path == p or path.startswith(p + "/") for p in self.prefixes)

    def admits(self, identity: Identity | None) -> bool:
        """The `from` clause: any one of the listed kinds of principal."""
        if self.anyone:
            return True
        if identity is None:
            return False
        return self.authenticated or identity.principal in self.principals or identity.issuer in self.issuers

    def conditions_hold(self, method: str, identity: Identity | None, client_ip: str) -> bool:
        """Method and `when` (and `from`, for a rule with claims): the index has settled the rest."""
        if self.methods and method not in self.methods:
            return False
        if self.claims or self.scopes:
            if identity is None:
                return False
            if self.scopes and not self.scopes <= identity.scopes:
                return False
            claims = identity.claims
            for c in self.claims:
                if c.name not in claims or not c.accepts(claims[c.name]):
                    return False
            # The index may file a rule with claims by claim value rather than by who; so check who too.
            if self.claims and not self.admits(identity):
                return False
        if self.networks:
            ip = parse_ip_cached(client_ip)
            if ip is None:
                return False
            version, n = ip
            for net in self.networks:  # noqa: SIM110  (any() over a generator costs ~0.3 µs more)
                if net.version == version and n & net.mask == net.base:
                    return True
            return False
        return True

    def matches(
        self, *, route: str, method: str, path: str, identity: Identity | None, client_ip: str
    ) -> bool:
        return (
            self.covers_route(route)
            and self.covers_path(path)
            and self.admits(identity)
            and self.conditions_hold(method, identity, client_ip)
        )

    def __repr__(self) -> str:
        return f"<CompiledRule {self.name} {self.effect}>"


__all__ = [
    "NO_MATCH",
    "PUBLIC_ALLOW",
    "ClaimCondition",
    "CompiledRule",
    "Decision",
    "Effect",
    "Network",
    "claim_key",
    "parse_ip",
    "parse_ip_cached",
]
