"""SPIFFE-ID §2 (checklist rows ID1–ID6) on ``SpiffeId``; py-spiffe and ``workload_id`` as oracles."""

from __future__ import annotations

import dataclasses

import pytest
import spiffe
from hypothesis import given
from hypothesis import strategies as st

from garrison.errors import IdentityError
from garrison.identity.ca import SpiffeId
from garrison.identity.principal import workload_id

VALID = [
    pytest.param("spiffe://example.org", id="trust-domain-only"),
    pytest.param("spiffe://example.org/svc/web", id="workload"),
    pytest.param("spiffe://a-b_c.9/ns/Prod/sa/x.y-z_1", id="all-allowed-chars"),
    pytest.param("spiffe://td/..a/a..", id="dots-inside-a-segment"),
]

INVALID = [
    pytest.param("https://example.org/x", "scheme", id="ID1-wrong-scheme"),
    pytest.param("SPIFFE://example.org/x", "scheme", id="ID1-uppercase-scheme"),
    pytest.param("spiffe:///x", "empty", id="ID1-empty-trust-domain"),
    pytest.param("spiffe://example.org/x?a=1", "query", id="ID1-query"),
    pytest.param("spiffe://example.org/x#f", "query or fragment", id="ID1-fragment"),
    pytest.param("spiffe://u@example.org/x", "userinfo", id="ID2-userinfo"),
    pytest.param("spiffe://example.org:443/x", "port", id="ID2-port"),
    pytest.param("spiffe://t%64/x", "percent", id="ID2-percent-encoded-trust-domain"),
    pytest.param("spiffe://Example.org/x", "lower-case", id="ID2-uppercase-trust-domain"),
    pytest.param("spiffe://exa mple.org/x", "a-z", id="ID2-space-in-trust-domain"),
    pytest.param("spiffe://example.org/a//b", "empty segment", id="ID3-empty-segment"),
    pytest.param("spiffe://example.org/a/./b", "'.' or '..'", id="ID3-dot-segment"),
    pytest.param("spiffe://example.org/a/../b", "'.' or '..'", id="ID3-dotdot-segment"),
    pytest.param("spiffe://example.org/..", "'.' or '..'", id="ID3-dotdot-only"),
    pytest.param("spiffe://example.org/a/", "trailing", id="ID3-trailing-slash"),
    pytest.param("spiffe://example.org/", "trailing", id="ID3-root-trailing-slash"),
    pytest.param("spiffe://example.org/a%2Fb", "percent", id="ID3-percent-encoded-path"),
    pytest.param("spiffe://example.org/a b", "A-Z", id="ID3-space-in-path"),
    pytest.param("spiffe://example.org/caf\u00e9", "A-Z", id="ID3-non-ascii-path"),
    pytest.param("spiffe://" + "a" * 256 + "/x", "255", id="ID4-trust-domain-too-long"),
    pytest.param("spiffe://example.org/" + "a" * 2029, "2048", id="ID4-2049-bytes"),
]


@pytest.mark.parametrize("value", VALID)
def test_valid_ids_parse_and_round_trip(value: str) -> None:
    sid = SpiffeId(value)
    assert str(sid) == value
    assert SpiffeId.from_parts(sid.trust_domain, sid.path) == sid
    assert str(spiffe.SpiffeId(value)) == value  # py-spiffe agrees


@pytest.mark.parametrize(("value", "why"), INVALID)
def test_invalid_ids_are_refused_with_a_clear_message(value: str, why: str) -> None:
    with pytest.raises(IdentityError, match="invalid SPIFFE ID") as info:
        SpiffeId(value)
    assert why in str(info.value)


def test_an_id_of_exactly_2048_bytes_is_accepted() -> None:
    value = "spiffe://example.org/" + "a" * (2048 - len("spiffe://example.org/"))
    assert len(value) == 2048
    assert str(SpiffeId(value)) == value


def test_path_is_case_sensitive() -> None:  # ID5
    assert SpiffeId("spiffe://td/Foo") != SpiffeId("spiffe://td/foo")


def test_ip_and_dns_like_trust_domains_are_treated_alike() -> None:  # ID6: no special-casing
    assert SpiffeId("spiffe://10.0.0.1/x").trust_domain == "10.0.0.1"
    assert SpiffeId("spiffe://localhost/x").trust_domain == "localhost"


def test_spiffe_id_is_a_frozen_slotted_value() -> None:
    sid = SpiffeId("spiffe://td/a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sid.value = "spiffe://td/b"  # type: ignore[misc]
    assert not hasattr(sid, "__dict__")
    assert {sid, SpiffeId("spiffe://td/a")} == {sid}
    assert sid.is_root is False and SpiffeId("spiffe://td").is_root is True


_chars = st.sampled_from("abcAB09._-/%?#@: ")


@given(st.text(_chars, max_size=24))
def test_agrees_with_workload_id_for_workloads_in_our_trust_domain(path: str) -> None:
    value = "spiffe://td/" + path
    try:
        sid: SpiffeId | None = SpiffeId(value)
    except IdentityError:
        sid = None
    ours = sid is not None and sid.member_of("td") and not sid.is_root
    assert ours == (workload_id(value, "td") is not None)


@given(st.text(st.sampled_from("abAB09._-/%?#@: "), max_size=12), st.text(_chars, max_size=12))
def test_agrees_with_py_spiffe_on_canonical_ids(td: str, path: str) -> None:
    """py-spiffe folds an upper-case scheme/trust domain (§2.4); we refuse it (§2.1 "MUST be
    lowercase"), so we accept exactly the IDs py-spiffe accepts *unchanged*."""
    value = f"spiffe://{td}/{path}" if path else f"spiffe://{td}"
    try:
        SpiffeId(value)
        ours = True
    except IdentityError:
        ours = False
    try:
        theirs = str(spiffe.SpiffeId(value)) == value
    except Exception:
        theirs = False
    assert ours == theirs, value
