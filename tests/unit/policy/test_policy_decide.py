"""Policy semantics, end to end through the compiler: deny > allow > public > default deny."""

from __future__ import annotations

from typing import Any

import pytest
from policy_support import PARTNER_ISS, config, user, workload

from garrison.pipeline.context import Identity
from garrison.policy import Decision, PolicyIndex, compile_policies
from garrison.reasons import Reason

SEED = """
- name: ms2-reads-ms1
  routes: [ms1-getdata]
  from: {services: [microservice2]}
"""


def decide(
    index: PolicyIndex,
    identity: Identity | None,
    *,
    route: str = "api",
    path: str = "/api/orders",
    method: str = "GET",
    public: bool = False,
    client_ip: str = "10.1.2.3",
) -> Decision:
    return index.decide(
        route=route, public=public, method=method, path=path, identity=identity, client_ip=client_ip
    )


def allowed_by(rule: str) -> Decision:
    return Decision(True, Reason.ALLOWED, rule)


DENIED_NO_MATCH = Decision(False, Reason.POLICY_NO_MATCH, None)


class TestSeedRule:
    """The seeds' rule, as written: "/microservice1/getData: allow from microservice2 only if its JWT is
    valid; block all other access"."""

    @pytest.fixture
    def index(self) -> PolicyIndex:
        return compile_policies(config(SEED))

    def ask(self, index: PolicyIndex, identity: Identity | None) -> Decision:
        return decide(index, identity, route="ms1-getdata", path="/microservice1/getData")

    def test_microservice2_is_allowed_by_the_seed_rule(self, index: PolicyIndex) -> None:
        assert self.ask(index, workload("microservice2")) == allowed_by("ms2-reads-ms1")

    @pytest.mark.parametrize(
        "identity",
        [
            pytest.param(workload("microservice3"), id="another-service"),
            pytest.param(workload("microservice2", td="evil.example"), id="same-name-other-trust-domain"),
            pytest.param(user("microservice2"), id="a-user-named-like-the-service"),
            pytest.param(None, id="anonymous"),
        ],
    )
    def test_everyone_else_gets_403_no_match(self, index: PolicyIndex, identity: Identity | None) -> None:
        d = self.ask(index, identity)
        assert d == DENIED_NO_MATCH
        assert d.reason.status == 403

    def test_microservice2_gets_nothing_on_other_routes(self, index: PolicyIndex) -> None:
        assert decide(index, workload("microservice2")) == DENIED_NO_MATCH


def test_deny_beats_allow_even_when_listed_after_it() -> None:
    index = compile_policies(
        config(
            """
            - {name: ms2-api, routes: [api], from: {services: [microservice2]}}
            - {name: no-deletes, effect: deny, routes: [api], methods: [DELETE], from: {any: true}}
            """
        )
    )
    assert decide(index, workload("microservice2"), method="GET") == allowed_by("ms2-api")
    assert decide(index, workload("microservice2"), method="DELETE") == Decision(
        False, Reason.POLICY_DENY, "no-deletes"
    )


def test_first_matching_deny_and_first_matching_allow_in_config_order_decide() -> None:
    index = compile_policies(
        config(
            """
            - {name: any-authn, from: {authenticated: true}}
            - {name: ms2, routes: [api], from: {services: [microservice2]}}
            - {name: deny-a, effect: deny, paths: [/api/secret/**], from: {services: [microservice2]}}
            - {name: deny-b, effect: deny, routes: [api], from: {any: true}, paths: [/api/secret/x]}
            """
        )
    )
    assert decide(index, workload("microservice2")) == allowed_by("any-authn")
    assert decide(index, workload("microservice2"), path="/api/secret/x").rule_id == "deny-a"
    assert decide(index, None, path="/api/secret/x").rule_id == "deny-b"


def test_no_rules_at_all_is_default_deny() -> None:
    assert decide(compile_policies(config()), workload("microservice2")) == DENIED_NO_MATCH


class TestPublicRoutes:
    def test_public_route_allows_anonymous_without_a_rule(self) -> None:
        index = compile_policies(config(SEED))
        d = decide(index, None, route="health", path="/health", public=True)
        assert d == Decision(True, Reason.ALLOWED, None)

    def test_explicit_deny_still_applies_on_a_public_route(self) -> None:
        index = compile_policies(
            config(
                """
                - name: block-scanners
                  effect: deny
                  routes: [health]
                  from: {any: true}
                  when: {source_cidrs: [203.0.113.0/24]}
                """
            )
        )

        def ask(client_ip: str) -> Decision:
            return decide(index, None, route="health", path="/health", public=True, client_ip=client_ip)

        assert ask("203.0.113.9") == Decision(False, Reason.POLICY_DENY, "block-scanners")
        assert ask("198.51.100.1").allowed

    def test_non_public_route_is_not_opened_by_the_public_flag_of_another(self) -> None:
        assert decide(compile_policies(config()), None, public=False) == DENIED_NO_MATCH


class TestWho:
    def test_user_rule_matches_issuer_value_and_subject(self) -> None:
        index = compile_policies(
            config("- {name: alice, routes: [api], from: {users: [{issuer: corp, subject: alice}]}}")
        )
        assert decide(index, user("alice")) == allowed_by("alice")
        assert decide(index, user("bob")) == DENIED_NO_MATCH
        assert decide(index, user("alice", issuer="partner", iss=PARTNER_ISS)) == DENIED_NO_MATCH

    def test_issuer_level_rule_admits_every_identity_of_that_issuer(self) -> None:
        index = compile_policies(config("- {name: partners, routes: [api], from: {issuers: [partner]}}"))
        assert decide(index, user("anyone", issuer="partner", iss=PARTNER_ISS)) == allowed_by("partners")
        assert decide(index, user("alice")) == DENIED_NO_MATCH
        assert decide(index, None) == DENIED_NO_MATCH

    def test_from_kinds_are_alternatives(self) -> None:
        index = compile_policies(
            config(
                """
                - name: either
                  routes: [api]
                  from: {services: [microservice3], users: [{issuer: corp, subject: alice}]}
                """
            )
        )
        assert decide(index, workload("microservice3")).allowed
        assert decide(index, user("alice")).allowed
        assert not decide(index, workload("microservice2")).allowed

    def test_authenticated_admits_any_identity_but_not_anonymous(self) -> None:
        index = compile_policies(config("- {name: authn, from: {authenticated: true}}"))
        assert decide(index, user("zed", issuer="partner", iss=PARTNER_ISS)).allowed
        assert decide(index, workload("microservice3")).allowed
        assert decide(index, None) == DENIED_NO_MATCH

    def test_any_admits_anonymous_too(self) -> None:
        index = compile_policies(config("- {name: open, routes: [api], from: {any: true}}"))
        assert decide(index, None) == allowed_by("open")

    def test_service_with_its_own_spiffe_id_and_a_literal_spiffe_id(self) -> None:
        index = compile_policies(
            config(
                """
                - {name: billing, routes: [api], from: {services: [billing]}}
                - {name: literal, routes: [api], from: {services: ["spiffe://other.example/svc/batch"]}}
                """
            )
        )
        billing = Identity("spiffe://prod.example/ns/billing/sa/api", "workload", "mesh", "b", "mtls")
        assert decide(index, billing) == allowed_by("billing")
        assert decide(index, workload("batch", td="other.example")) == allowed_by("literal")
        assert decide(index, workload("billing")) == DENIED_NO_MATCH

    def test_rule_without_routes_applies_on_every_route(self) -> None:
        index = compile_policies(config("- {name: ms2-everywhere, from: {services: [microservice2]}}"))
        assert decide(index, workload("microservice2"), route="api").allowed
        assert decide(
            index, workload("microservice2"), route="ms1-getdata", path="/microservice1/getData"
        ).allowed


class TestWhat:
    @pytest.fixture
    def index(self) -> PolicyIndex:
        return compile_policies(
            config(
                """
                - name: admin-area
                  routes: [api]
                  paths: [/api/admin/**, /api/status]
                  methods: [GET, POST]
                  from: {services: [microservice2]}
                """
            )
        )

    @pytest.mark.parametrize(
        ("path", "allowed"),
        [
            pytest.param("/api/admin", True, id="prefix-itself"),
            pytest.param("/api/admin/", True, id="prefix-with-trailing-slash"),
            pytest.param("/api/admin/users/7", True, id="below-prefix"),
            pytest.param("/api/administrator", False, id="sibling-sharing-the-letters"),
            pytest.param("/api/status", True, id="exact-path"),
            pytest.param("/api/status/x", False, id="below-an-exact-path"),
            pytest.param("/api", False, id="parent-of-prefix"),
        ],
    )
    def test_paths_exact_or_prefix(self, index: PolicyIndex, path: str, allowed: bool) -> None:
        assert decide(index, workload("microservice2"), path=path).allowed is allowed

    @pytest.mark.parametrize(("method", "allowed"), [("GET", True), ("POST", True), ("DELETE", False)])
    def test_methods(self, index: PolicyIndex, method: str, allowed: bool) -> None:
        d = decide(index, workload("microservice2"), path="/api/status", method=method)
        assert d.allowed is allowed

    def test_catch_all_path_is_any_path(self) -> None:
        index = compile_policies(config("- {name: all, paths: ['/**'], from: {services: [microservice2]}}"))
        assert decide(index, workload("microservice2"), path="/anything/at/all").allowed


def claims_index(when: str) -> PolicyIndex:
    return compile_policies(
        config(f"- {{name: by-claim, routes: [api], from: {{issuers: [corp]}}, when: {when}}}")
    )


class TestWhen:
    @pytest.mark.parametrize(
        ("when", "claims", "allowed"),
        [
            pytest.param("{claims: {team: payments}}", {"team": "payments"}, True, id="scalar-equal"),
            pytest.param("{claims: {team: payments}}", {"team": "orders"}, False, id="scalar-different"),
            pytest.param("{claims: {team: payments}}", {}, False, id="claim-missing"),
            pytest.param(
                "{claims: {groups: admins}}", {"groups": ["users", "admins"]}, True, id="list-claim-holds-it"
            ),
            pytest.param(
                "{claims: {groups: admins}}", {"groups": ["users"]}, False, id="list-claim-lacks-it"
            ),
            pytest.param(
                "{claims: {team: [payments, orders]}}", {"team": "orders"}, True, id="one-of-accepted"
            ),
            pytest.param(
                "{claims: {team: [payments, orders]}}", {"team": "ops"}, False, id="none-of-accepted"
            ),
            pytest.param("{claims: {level: 3}}", {"level": 3}, True, id="integer-equal"),
            pytest.param("{claims: {level: 3}}", {"level": "3"}, False, id="string-is-not-integer"),
            pytest.param("{claims: {mfa: true}}", {"mfa": True}, True, id="boolean-equal"),
            pytest.param("{claims: {mfa: true}}", {"mfa": 1}, False, id="one-is-not-true"),
            pytest.param("{claims: {level: 1}}", {"level": True}, False, id="true-is-not-one"),
            pytest.param(
                "{claims: {team: x}}", {"team": {"name": "x"}}, False, id="object-claim-never-matches"
            ),
            pytest.param(
                "{claims: {team: payments, mfa: true}}", {"team": "payments"}, False, id="all-claims-required"
            ),
        ],
    )
    def test_claims(self, when: str, claims: dict[str, Any], allowed: bool) -> None:
        assert decide(claims_index(when), user("alice", claims=claims)).allowed is allowed

    @pytest.mark.parametrize(
        ("scopes", "allowed"),
        [
            pytest.param(("orders:read", "orders:write"), True, id="all-scopes-present"),
            pytest.param(("orders:read", "orders:write", "x"), True, id="extra-scopes-fine"),
            pytest.param(("orders:read",), False, id="one-scope-missing"),
            pytest.param((), False, id="no-scopes"),
        ],
    )
    def test_scopes_are_all_required(self, scopes: tuple[str, ...], allowed: bool) -> None:
        index = claims_index("{scopes: [orders:read, orders:write]}")
        assert decide(index, user("alice", scopes=scopes)).allowed is allowed

    @pytest.mark.parametrize(
        ("client_ip", "allowed"),
        [
            pytest.param("10.20.30.40", True, id="v4-inside"),
            pytest.param("10.21.0.1", False, id="v4-outside"),
            pytest.param("::ffff:10.20.0.1", True, id="v4-mapped-v6-inside"),
            pytest.param("2001:db8:1::5", True, id="v6-inside"),
            pytest.param("2001:db9::5", False, id="v6-outside"),
            pytest.param("fe80::1%eth0", False, id="v6-with-zone-outside"),
            pytest.param("unix:/run/garrison.sock", False, id="not-an-ip"),
        ],
    )
    def test_source_cidrs(self, client_ip: str, allowed: bool) -> None:
        index = claims_index("{source_cidrs: [10.20.0.0/16, '2001:db8::/32']}")
        assert decide(index, user("alice"), client_ip=client_ip).allowed is allowed

    def test_a_claim_rule_still_requires_its_issuer(self) -> None:
        index = claims_index("{claims: {team: payments}}")
        partner = user("alice", issuer="partner", iss=PARTNER_ISS, claims={"team": "payments"})
        assert decide(index, partner) == DENIED_NO_MATCH
        assert decide(index, user("alice", claims={"team": "payments"})) == allowed_by("by-claim")

    def test_when_conditions_fail_for_anonymous(self) -> None:
        index = compile_policies(
            config("- {name: c, routes: [api], from: {any: true}, when: {claims: {team: x}}}")
        )
        assert decide(index, None) == DENIED_NO_MATCH
