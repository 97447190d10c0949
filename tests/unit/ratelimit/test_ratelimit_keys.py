"""Bucket keys built from the request by a rule's `key:` parts."""

from __future__ import annotations

from typing import Any

import pytest

from garrison.pipeline.context import Identity, RequestContext
from garrison.pipeline.route import Route, Upstream
from garrison.ratelimit import build_key_fn

ALICE = Identity(
    principal="https://idp.example#alice",
    kind="user",
    issuer="corp",
    subject="alice",
    method="jwt",
    claims={"tenant": "acme", "tier": 2, "groups": ["a", "b"]},
)
API = Route("api", "/api", True, frozenset({"GET"}), None, Upstream("http", "127.0.0.1", 9000))


def request(
    identity: Identity | None = ALICE, route: Route | None = API, ip: str = "10.0.0.1"
) -> RequestContext:
    ctx = RequestContext(
        method="GET", raw_target=b"/api/x", headers=[], client_addr=ip, request_id="r1", now=0.0
    )
    ctx.identity = identity
    ctx.route = route
    return ctx


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        pytest.param(["client_ip"], ("10.0.0.1",), id="client-ip"),
        pytest.param(["subject"], ("https://idp.example#alice",), id="subject-is-the-principal"),
        pytest.param(["route"], ("api",), id="route-name"),
        pytest.param(["claim:tenant"], ("acme",), id="string-claim"),
        pytest.param(["claim:tier"], (2,), id="number-claim"),
        pytest.param(["subject", "route"], ("https://idp.example#alice", "api"), id="per-subject-per-route"),
        pytest.param(["claim:tenant", "client_ip"], ("acme", "10.0.0.1"), id="claim-and-ip"),
    ],
)
def test_key_has_one_value_per_part_in_order(parts: list[str], key: tuple[Any, ...]) -> None:
    assert build_key_fn(parts)(request()) == key


@pytest.mark.parametrize(
    ("parts", "ctx"),
    [
        pytest.param(["subject"], request(identity=None), id="anonymous-has-no-subject"),
        pytest.param(["client_ip", "subject"], request(identity=None), id="any-part-missing"),
        pytest.param(["claim:missing"], request(), id="absent-claim"),
        pytest.param(["claim:tenant"], request(identity=None), id="claim-of-anonymous"),
        pytest.param(["claim:groups"], request(), id="list-claim-makes-no-key"),
        pytest.param(["route"], request(route=None), id="no-route-yet"),
    ],
)
def test_key_is_none_when_a_part_has_no_value(parts: list[str], ctx: RequestContext) -> None:
    assert build_key_fn(parts)(ctx) is None


def test_the_client_ip_is_the_one_the_hygiene_stage_settled_on() -> None:
    ctx = request()
    ctx.client_ip = "203.0.113.5"  # e.g. from a trusted proxy's X-Forwarded-For
    assert build_key_fn(["client_ip"])(ctx) == ("203.0.113.5",)


@pytest.mark.parametrize(
    "parts", [[], ["ip"], ["claim:"]], ids=["no-parts", "unknown-part", "claim-without-name"]
)
def test_bad_parts_are_refused(parts: list[str]) -> None:
    with pytest.raises(ValueError, match="key"):
        build_key_fn(parts)
