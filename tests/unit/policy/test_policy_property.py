"""Property: the compiled index decides exactly as the naive evaluator does (STYLE §11)."""

from __future__ import annotations

from typing import Any
from unittest import mock

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from policy_support import CORP_ISS, PARTNER_ISS, config

import garrison.policy.index
from garrison.config.models import GarrisonConfig
from garrison.pipeline.context import Identity
from garrison.policy import compile_policies, explain, naive_decide

# Small alphabets, so that rules and requests often meet.
ROUTES = ["ms1-getdata", "api", "health"]
RULE_PATHS = [
    "/api",
    "/api/a",
    "/api/**",
    "/api/a/**",
    "/api/a/b",
    "/api/b/**",
    "/**",
    "/microservice1/getData",
]
REQUEST_PATHS = [
    "/api",
    "/api/",
    "/api/a",
    "/api/a/",
    "/api/a/b",
    "/api/ab",
    "/api/b/c",
    "/microservice1/getData",
    "/x",
]
METHODS = ["GET", "POST", "DELETE"]
SERVICES = ["microservice1", "microservice2", "microservice3", "billing", "spiffe://other.example/svc/batch"]
USERS = [("corp", "alice"), ("corp", "bob"), ("partner", "alice")]
ISSUER_NAMES = ["corp", "partner", "mesh"]
CLAIM_VALUES: list[Any] = ["admin", 1, True, False]
CIDRS = ["10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32", "0.0.0.0/0", "192.0.2.7/32"]
CLIENT_IPS = ["10.1.2.3", "10.200.0.1", "192.0.2.7", "2001:db8::1", "::ffff:10.1.0.9", "fe80::1", "bogus"]
SCOPES = ["read", "write"]


def sublist(items: list[Any], max_size: int = 2, min_size: int = 0) -> st.SearchStrategy[list[Any]]:
    """A few distinct items, drawn as one bit mask (one draw, not one per item: much faster)."""
    mask = st.integers(1 if min_size else 0, 2 ** len(items) - 1)
    return mask.map(lambda m: [x for i, x in enumerate(items) if m >> i & 1][:max_size])


# Strategies are built once: building one per draw makes Hypothesis re-validate it every time.
WHO_KINDS = st.lists(
    st.sampled_from(["services", "users", "issuers", "authenticated", "any"]),
    min_size=1,
    max_size=2,
    unique=True,
)
SOME_SERVICES = sublist(SERVICES, min_size=1)
SOME_USERS = sublist(USERS, min_size=1).map(lambda us: [{"issuer": i, "subject": s} for i, s in us])
SOME_ISSUERS = sublist(ISSUER_NAMES, min_size=1)
CLAIM_CONDITIONS = st.dictionaries(
    st.sampled_from(["role", "level"]),
    st.one_of(st.sampled_from(CLAIM_VALUES), sublist(CLAIM_VALUES, 3, 1)),
    max_size=2,
)
SOME_SCOPES = sublist(SCOPES)
SOME_CIDRS = sublist(CIDRS, min_size=1)
EFFECTS = st.sampled_from(["allow", "allow", "deny"])
SOME_ROUTES = st.one_of(st.just([]), sublist(ROUTES))  # half the rules unrestricted, so rules often match
SOME_PATHS = st.one_of(st.just([]), sublist(RULE_PATHS))
SOME_METHODS = st.one_of(st.just([]), sublist(METHODS))


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    who: dict[str, Any] = {}
    for kind in draw(WHO_KINDS):
        if kind == "services":
            who["services"] = draw(SOME_SERVICES)
        elif kind == "users":
            who["users"] = draw(SOME_USERS)
        elif kind == "issuers":
            who["issuers"] = draw(SOME_ISSUERS)
        else:
            who[kind] = True
    when: dict[str, Any] = {}
    if draw(st.booleans()):
        when["claims"] = draw(CLAIM_CONDITIONS)
    if draw(st.booleans()):
        when["scopes"] = draw(SOME_SCOPES)
    if draw(st.integers(0, 3)) == 0:
        when["source_cidrs"] = draw(SOME_CIDRS)
    return {
        "effect": draw(EFFECTS),
        "routes": draw(SOME_ROUTES),
        "paths": draw(SOME_PATHS),
        "methods": draw(SOME_METHODS),
        "from": who,
        "when": when,
    }


RULE_LISTS = st.lists(rules(), max_size=8)


@st.composite
def configs(draw: st.DrawFn) -> GarrisonConfig:
    policies = [{"name": f"rule{i}", **rule} for i, rule in enumerate(draw(RULE_LISTS))]
    return config(policies=policies)


WORKLOADS = [
    "spiffe://garrison.local/svc/microservice1",
    "spiffe://garrison.local/svc/microservice2",
    "spiffe://garrison.local/svc/microservice3",
    "spiffe://prod.example/ns/billing/sa/api",
    "spiffe://other.example/svc/batch",
]
IDENTITY_KINDS = st.sampled_from(["anonymous", "workload", "user"])
CLAIMS = st.dictionaries(
    st.sampled_from(["role", "level", "other"]),
    st.one_of(
        st.sampled_from(CLAIM_VALUES), sublist(CLAIM_VALUES, 3), st.sampled_from(["dev", 1.0, None, {"x": 1}])
    ),
    max_size=3,
)
SCOPE_SETS = sublist(SCOPES).map(frozenset)
WORKLOAD_IDS = st.sampled_from(WORKLOADS)
ANY_ISSUER = st.sampled_from(ISSUER_NAMES)
USER_ISSUERS = st.sampled_from([("corp", CORP_ISS), ("partner", PARTNER_ISS)])
SUBJECTS = st.sampled_from(["alice", "bob", "carol"])


@st.composite
def identities(draw: st.DrawFn) -> Identity | None:
    kind = draw(IDENTITY_KINDS)
    if kind == "anonymous":
        return None
    claims, scopes = draw(CLAIMS), draw(SCOPE_SETS)
    if kind == "workload":
        principal = draw(WORKLOAD_IDS)
        return Identity(principal, "workload", draw(ANY_ISSUER), principal, "jwt", claims, scopes)
    issuer, iss = draw(USER_ISSUERS)
    subject = draw(SUBJECTS)
    return Identity(f"{iss}#{subject}", "user", issuer, subject, "jwt", claims, scopes)


requests = st.fixed_dictionaries(
    {
        "route": st.sampled_from(ROUTES),
        "public": st.booleans(),
        "method": st.sampled_from(METHODS),
        "path": st.sampled_from(REQUEST_PATHS),
        "identity": identities(),
        "client_ip": st.sampled_from(CLIENT_IPS),
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), asks=st.lists(requests, min_size=1, max_size=8))
def test_index_decides_as_the_naive_evaluator(cfg: GarrisonConfig, asks: list[dict[str, Any]]) -> None:
    index = compile_policies(cfg)
    with mock.patch.object(garrison.policy.index, "_MAX_CUTS", 0):  # probe prefixes by the path's parents
        by_parents = compile_policies(cfg)
    for ask in asks:
        expected = naive_decide(cfg, **ask)
        assert index.decide(**ask) == expected
        assert by_parents.decide(**ask) == expected
        event(f"{expected.reason.value}{'' if expected.rule_id is None else ' by a rule'}")
        explained = explain(list(index.rules), **ask)
        assert explained.decision == expected
        on_route = index.rules_for_route(ask["route"])
        request = {k: v for k, v in ask.items() if k != "public"}
        assert [t.matched for t in explained.traces] == [r.matches(**request) for r in on_route]
