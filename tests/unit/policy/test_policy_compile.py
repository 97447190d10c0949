"""Compiling rules: names resolved at load, errors name the rule, the index looks at few rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
import pytest
import yaml
from policy_support import CORP_ISS, config, user, workload

import garrison.policy
import garrison.ratelimit
from garrison.config.models import PolicyRule, RouteConfig, Service
from garrison.errors import PolicyError
from garrison.pipeline.context import Identity
from garrison.policy import CompiledRule, PolicyIndex, compile_policies


def with_rule(rule_yaml: str) -> object:
    """A config carrying a rule the config loader would reject (as a hand-built config could)."""
    rule = PolicyRule.model_validate(yaml.safe_load(rule_yaml))
    return config().model_copy(update={"policies": [rule]})


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        pytest.param(
            "{name: r1, from: {services: [microservice9]}}",
            "'r1': unknown service 'microservice9'",
            id="service",
        ),
        pytest.param(
            "{name: r2, from: {users: [{issuer: nope, subject: a}]}}",
            "'r2': unknown issuer 'nope'",
            id="user-issuer",
        ),
        pytest.param("{name: r3, from: {issuers: [nope]}}", "'r3': unknown issuer 'nope'", id="issuer"),
        pytest.param(
            "{name: r4, routes: [nope], from: {any: true}}", "'r4': unknown route 'nope'", id="route"
        ),
        pytest.param(
            "{name: r5, from: {services: ['spiffe://Bad Domain/x']}}",
            "'r5': malformed SPIFFE ID",
            id="spiffe-id",
        ),
        pytest.param(
            "{name: r6, from: {services: ['spiffe://td/a/../b']}}",
            "'r6': malformed SPIFFE ID",
            id="dot-segment",
        ),
        pytest.param(
            '{name: r7, from: {services: ["spiffe://td/a\\n"]}}',
            "'r7': malformed SPIFFE ID",
            id="trailing-newline",
        ),
    ],
)
def test_unresolvable_names_fail_compilation_naming_the_rule(rule: str, message: str) -> None:
    cfg = with_rule(rule)
    with pytest.raises(PolicyError, match=message):
        compile_policies(cfg)  # type: ignore[arg-type]


def test_unknown_service_is_already_rejected_when_the_config_loads() -> None:
    with pytest.raises(pydantic.ValidationError, match="unknown service 'microservice9'"):
        config("- {name: r1, from: {services: [microservice9]}}")


def test_services_resolve_to_spiffe_ids_and_users_to_iss_hash_subject() -> None:
    index = compile_policies(
        config(
            """
            - name: mixed
              from:
                services: [microservice2, billing]
                users: [{issuer: corp, subject: alice}]
            """
        )
    )
    (rule,) = index.rules
    assert rule.principals == {
        "spiffe://garrison.local/svc/microservice2",
        "spiffe://prod.example/ns/billing/sa/api",
        f"{CORP_ISS}#alice",
    }


def test_reprs_name_the_rule_and_size_the_index() -> None:
    index = compile_policies(
        config(
            """
            - {name: ms2-reads-ms1, routes: [ms1-getdata], from: {services: [microservice2]}}
            - {name: no-deletes, effect: deny, methods: [DELETE], from: {any: true}}
            """
        )
    )
    assert [repr(r) for r in index.rules] == [
        "<CompiledRule ms2-reads-ms1 allow>",
        "<CompiledRule no-deletes deny>",
    ]
    assert repr(index) == "<PolicyIndex 2 rules (1 deny), 1 routes>"


def count_condition_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original: Callable[..., bool] = CompiledRule.conditions_hold

    def counting(self: CompiledRule, method: str, identity: Identity | None, client_ip: str) -> bool:
        seen.append(self.name)
        return original(self, method, identity, client_ip)

    monkeypatch.setattr(CompiledRule, "conditions_hold", counting)
    return seen


def rules_10000(shape: str) -> list[dict[str, Any]]:
    """10,000 rules of one shape, rule i for subject/path/claim i; each has a condition (GET only)."""
    out: list[dict[str, Any]] = []
    for i in range(10_000):
        rule: dict[str, Any] = {"name": f"p{i}", "methods": ["GET"]}
        if shape == "a-service-each-on-many-routes":
            rule |= {"routes": [f"r{i % 100}"], "from": {"services": [f"s{i // 100}"]}}
        elif shape == "a-user-each":
            rule |= {"from": {"users": [{"issuer": "corp", "subject": f"u{i}"}]}}
        elif shape == "a-path-prefix-each":
            rule |= {"paths": [f"/api/t{i}/**"], "from": {"authenticated": True}}
        elif shape == "prefixes-of-many-lengths":
            rule |= {"paths": [f"/{'x' * (i % 12 + 1)}/{i}/**"], "from": {"any": True}}
        elif shape == "a-claim-value-each":
            rule |= {"from": {"issuers": ["corp"]}, "when": {"claims": {"team": f"t{i}"}}}
        out.append(rule)
    return out


def ask_for_rule_1742(shape: str) -> dict[str, Any]:
    someone = user("u1742", claims={"team": "t1742"})
    route, path = "api", "/api/t1742/x"
    if shape == "a-service-each-on-many-routes":
        someone, route = workload("s17"), "r42"
    elif shape == "prefixes-of-many-lengths":
        path = f"/{'x' * (1742 % 12 + 1)}/1742/y"
    return {
        "route": route,
        "public": False,
        "method": "GET",
        "path": path,
        "identity": someone,
        "client_ip": "::1",
    }


SHAPES = [
    "a-service-each-on-many-routes",
    "a-user-each",
    "a-path-prefix-each",
    "prefixes-of-many-lengths",
    "a-claim-value-each",
]


@pytest.mark.parametrize("shape", SHAPES)
def test_a_decision_among_10000_rules_checks_only_the_rules_filed_under_it(
    shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = config()
    extra_routes = [
        RouteConfig.model_validate({"name": f"r{i}", "path": f"/r{i}/**", "upstream": "http://127.0.0.1:1"})
        for i in range(100)
    ]
    cfg = base.model_copy(
        update={
            "routes": [*base.routes, *extra_routes],
            "services": {**base.services, **{f"s{i}": Service.model_validate({}) for i in range(100)}},
            "policies": [PolicyRule.model_validate(p) for p in rules_10000(shape)],
        }
    )
    index = compile_policies(cfg)
    seen = count_condition_checks(monkeypatch)

    ask = ask_for_rule_1742(shape)
    assert index.decide(**ask).rule_id == "p1742"
    assert seen == ["p1742"]

    seen.clear()
    ask["method"] = "POST"
    assert not index.decide(**ask).allowed
    assert seen == ["p1742"]


@pytest.mark.parametrize("module", [garrison.policy, garrison.ratelimit])
def test_package_exports_are_pinned(module: object) -> None:
    exported = module.__all__  # type: ignore[attr-defined]
    assert exported == sorted(exported)
    for name in exported:
        assert getattr(module, name) is not None


def test_index_can_be_built_from_rules_directly() -> None:
    rule = CompiledRule(name="x", order=0, effect="allow", anyone=True)
    index = PolicyIndex([rule])
    d = index.decide(route="any", public=False, method="GET", path="/", identity=None, client_ip="::1")
    assert d.rule_id == "x"
