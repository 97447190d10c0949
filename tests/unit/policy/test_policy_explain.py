"""`policy explain`: each rule on the route, matched or why not, and the index's decision."""

from __future__ import annotations

from policy_support import config, user, workload

from garrison.pipeline.context import Identity
from garrison.policy import (
    CompiledRule,
    Explanation,
    PolicyIndex,
    compile_policies,
    explain,
    format_explanation,
)
from garrison.reasons import Reason

POLICIES = """
- name: ms2-reads-ms1
  routes: [ms1-getdata]
  from: {services: [microservice2]}
- name: office-only
  effect: deny
  routes: [ms1-getdata]
  from: {any: true}
  when: {source_cidrs: [192.0.2.0/24]}
- name: admins
  routes: [ms1-getdata]
  methods: [GET]
  from: {issuers: [corp]}
  when: {claims: {role: admin}, scopes: [data:read]}
- name: elsewhere
  routes: [api]
  from: {any: true}
"""


def explain_ms1(
    policies: PolicyIndex | list[CompiledRule], identity: Identity | None, client_ip: str = "10.0.0.7"
) -> Explanation:
    return explain(
        policies,
        route="ms1-getdata",
        public=False,
        method="GET",
        path="/microservice1/getData",
        identity=identity,
        client_ip=client_ip,
    )


def test_explains_why_each_rule_on_the_route_did_not_match() -> None:
    index = compile_policies(config(POLICIES))
    ex = explain_ms1(index, workload("microservice3"))

    assert [t.rule for t in ex.traces] == ["ms2-reads-ms1", "office-only", "admins"]  # not `elsewhere`
    by_rule = {t.rule: t for t in ex.traces}
    assert by_rule["ms2-reads-ms1"].failed == (
        "from: spiffe://garrison.local/svc/microservice3 (issuer mesh) is not services microservice2",
    )
    assert by_rule["office-only"].failed == ("client 10.0.0.7 is not in 192.0.2.0/24",)
    assert by_rule["admins"].failed == (
        "from: spiffe://garrison.local/svc/microservice3 (issuer mesh) is not issuers corp",
        "claim role is missing",
        "scope(s) missing: data:read",
    )
    assert (ex.decision.allowed, ex.decision.reason, ex.decision.rule_id) == (
        False,
        Reason.POLICY_NO_MATCH,
        None,
    )


def test_explains_the_deciding_rule() -> None:
    index = compile_policies(config(POLICIES))
    ex = explain_ms1(index, user("alice", claims={"role": "admin"}, scopes=("data:read",)))
    assert [t.matched for t in ex.traces] == [False, False, True]
    assert ex.decision.rule_id == "admins"

    ex = explain_ms1(index, workload("microservice2"), "192.0.2.1")
    assert [t.matched for t in ex.traces] == [True, True, False]
    assert (ex.decision.reason, ex.decision.rule_id) == (Reason.POLICY_DENY, "office-only")


def test_explain_over_bare_rules_reaches_the_same_decision() -> None:
    index = compile_policies(config(POLICIES))
    for identity, ip in [
        (workload("microservice2"), "192.0.2.1"),
        (workload("microservice2"), "10.0.0.1"),
        (None, "1.1.1.1"),
    ]:
        from_index = explain_ms1(index, identity, ip)
        from_rules = explain_ms1(list(index.rules), identity, ip)
        assert from_rules == from_index


def test_format_explanation_reads_as_one_line_per_rule() -> None:
    index = compile_policies(config(POLICIES))
    ex = explain_ms1(index, workload("microservice3"))
    assert format_explanation(ex).splitlines() == [
        "request: GET /microservice1/getData on route ms1-getdata"
        " from spiffe://garrison.local/svc/microservice3 (workload) at 10.0.0.7",
        "  allow ms2-reads-ms1: no match: from: spiffe://garrison.local/svc/microservice3 (issuer mesh)"
        " is not services microservice2",
        "  deny  office-only: no match: client 10.0.0.7 is not in 192.0.2.0/24",
        "  allow admins: no match: from: spiffe://garrison.local/svc/microservice3 (issuer mesh)"
        " is not issuers corp; claim role is missing; scope(s) missing: data:read",
        "decision: DENY 403 policy_no_match by no allow rule matched (default deny)",
    ]

    ok = explain_ms1(index, workload("microservice2"))
    assert format_explanation(ok).splitlines()[-1] == "decision: ALLOW allowed by rule ms2-reads-ms1"


def test_format_explanation_of_a_public_route_without_rules() -> None:
    index = compile_policies(config(POLICIES))
    ex = explain(
        index, route="health", public=True, method="GET", path="/health", identity=None, client_ip="::1"
    )
    assert format_explanation(ex).splitlines() == [
        "request: GET /health on route health (public) from anonymous at ::1",
        "  no rule applies to this route",
        "decision: ALLOW allowed by public route, no rule denies",
    ]
