"""Ingress header stripping and the client address behind trusted proxies."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network

import pytest

from garrison.http.headers import (
    FORWARDING_HEADERS,
    HOP_BY_HOP,
    IDENTITY_HEADERS,
    client_ip_from_forwarded,
    connection_options,
    is_spoofable,
    sanitize_request_headers,
)

Headers = list[tuple[bytes, bytes]]


@pytest.mark.parametrize(
    "name",
    [
        *[pytest.param(h, id=h.decode()) for h in IDENTITY_HEADERS],
        pytest.param(b"x-garrison-anything-new", id="any-x-garrison-header"),
        pytest.param(b"X-Garrison-Principal", id="identity-header-any-case"),
        pytest.param(b"x_garrison_principal", id="identity-header-with-underscores"),
        pytest.param(b"x-forwarded-for", id="xff"),
        pytest.param(b"x-forwarded-user", id="forwarded-user"),
        pytest.param(b"x-forwarded-email", id="forwarded-email"),
        pytest.param(b"x-forwarded-client-cert", id="envoy-xfcc"),
        pytest.param(b"forwarded", id="rfc7239-forwarded"),
        pytest.param(b"x-real-ip", id="real-ip"),
        pytest.param(b"x-client-ip", id="client-ip"),
        pytest.param(b"true-client-ip", id="true-client-ip"),
        pytest.param(b"cf-connecting-ip", id="cloudflare-client-ip"),
        pytest.param(b"x-original-url", id="original-url"),
        pytest.param(b"x-rewrite-url", id="rewrite-url"),
        pytest.param(b"x-original-uri", id="original-uri"),
        pytest.param(b"x-user", id="x-user"),
        pytest.param(b"x-user-id", id="x-user-id"),
        pytest.param(b"x-username", id="x-username"),
        pytest.param(b"x-auth-user", id="x-auth-user"),
        pytest.param(b"x-auth-request-email", id="oauth2-proxy-auth-request"),
        pytest.param(b"x-jwt-assertion", id="jwt-assertion"),
        pytest.param(b"x-remote-user", id="x-remote-user"),
        pytest.param(b"remote-user", id="remote-user"),
        pytest.param(b"x-spiffe-id", id="spiffe-id"),
        pytest.param(b"x-client-cert", id="client-cert"),
        pytest.param(b"x-client-cert-dn", id="client-cert-dn"),
        pytest.param(b"x-ssl-client-s-dn", id="ssl-client-dn"),
        pytest.param(b"x-amzn-oidc-identity", id="aws-alb-oidc"),
        pytest.param(b"x-ms-client-principal-name", id="azure-easy-auth"),
        pytest.param(b"x-goog-authenticated-user-email", id="google-iap"),
        pytest.param(b"x-pomerium-jwt-assertion", id="pomerium"),
        pytest.param(b"x-email", id="x-email"),
        pytest.param(b"x-principal-id", id="x-principal"),
        pytest.param(b"x-webauth-user", id="grafana-auth-proxy"),
        pytest.param(b"x-authenticated-userid", id="kong-authenticated"),
        pytest.param(b"x-consumer-username", id="kong-consumer"),
        pytest.param(b"x-http-method-override", id="method-override"),
        pytest.param(b"X_Forwarded_For", id="xff-with-underscores"),
        pytest.param(b"X_User", id="x-user-with-underscores"),
    ],
)
def test_spoofable(name: bytes) -> None:
    assert is_spoofable(name)


@pytest.mark.parametrize(
    "name",
    [
        b"host",
        b"authorization",
        b"cookie",
        b"content-type",
        b"content-length",
        b"accept",
        b"user-agent",
        b"traceparent",
        b"x-request-id",
        b"x-api-key",
        b"x-custom",
        b"forwarded-ish",
    ],
)
def test_not_spoofable(name: bytes) -> None:
    assert not is_spoofable(name)


def test_identity_headers_are_the_gateways_own() -> None:
    assert all(h.startswith(b"x-garrison-") for h in IDENTITY_HEADERS)
    assert b"x-garrison-principal" in IDENTITY_HEADERS
    assert len(set(IDENTITY_HEADERS)) == 6


def test_hop_by_hop_is_rfc_9110_list() -> None:
    assert {b"connection", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"keep-alive"} <= HOP_BY_HOP
    assert {b"proxy-authorization", b"proxy-authenticate", b"proxy-connection"} <= HOP_BY_HOP


INBOUND: Headers = [
    (b"host", b"api.example.com"),
    (b"authorization", b"Bearer t"),
    (b"x-garrison-principal", b"spiffe://evil/svc/admin"),
    (b"X-Forwarded-For", b"1.2.3.4"),
    (b"x-forwarded-proto", b"https"),
    (b"x-forwarded-host", b"api.example.com"),
    (b"forwarded", b"for=1.2.3.4"),
    (b"x-forwarded-user", b"admin"),
    (b"x_forwarded_for", b"9.9.9.9"),
    (b"connection", b"keep-alive, x-secret, host, content-length"),
    (b"keep-alive", b"timeout=5"),
    (b"te", b"trailers"),
    (b"transfer-encoding", b"chunked"),
    (b"x-secret", b"s"),
    (b"content-length", b"0"),
    (b"accept", b"*/*"),
]


def test_untrusted_peer_loses_every_spoofable_and_hop_by_hop_header() -> None:
    assert sanitize_request_headers(INBOUND, trusted_peer=False) == [
        (b"host", b"api.example.com"),
        (b"authorization", b"Bearer t"),
        (b"content-length", b"0"),
        (b"accept", b"*/*"),
    ]


def test_trusted_peer_keeps_forwarding_headers_but_not_identity() -> None:
    kept = sanitize_request_headers(INBOUND, trusted_peer=True)
    names = [n.lower() for n, _ in kept]
    assert names == [
        b"host",
        b"authorization",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
        b"content-length",
        b"accept",
    ]
    assert set(names) >= FORWARDING_HEADERS
    assert b"x-garrison-principal" not in names
    assert b"x-forwarded-user" not in names
    assert b"x_forwarded_for" not in names


def test_connection_cannot_strip_host_or_content_length() -> None:
    headers = [(b"host", b"a"), (b"content-length", b"3"), (b"Connection", b"Host, Content-Length")]
    assert sanitize_request_headers(headers, trusted_peer=False) == headers[:2]


def test_connection_listed_header_is_dropped_whatever_its_position() -> None:
    headers = [(b"x-secret", b"1"), (b"connection", b"X-Secret"), (b"x-other", b"2")]
    assert sanitize_request_headers(headers, trusted_peer=False) == [(b"x-other", b"2")]


def test_connection_options_across_headers() -> None:
    headers = [(b"connection", b"close, X-A"), (b"Connection", b" x-b ,,")]
    assert connection_options(headers) == {b"close", b"x-a", b"x-b"}


def test_sanitize_returns_a_new_list() -> None:
    headers = [(b"accept", b"*/*")]
    out = sanitize_request_headers(headers, trusted_peer=False)
    assert out == headers
    assert out is not headers


# -- client address ----------------------------------------------------------------------------------

PROXIES: tuple[IPv4Network | IPv6Network, ...] = (ip_network("10.0.0.0/8"), ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        pytest.param("203.0.113.9", [b"1.2.3.4"], "203.0.113.9", id="untrusted-peer-xff-ignored"),
        pytest.param("10.0.0.1", [], "10.0.0.1", id="trusted-peer-without-xff"),
        pytest.param("10.0.0.1", [b"198.51.100.7"], "198.51.100.7", id="one-hop"),
        pytest.param(
            "10.0.0.1", [b"6.6.6.6, 198.51.100.7"], "198.51.100.7", id="client-forged-left-value-ignored"
        ),
        pytest.param(
            "10.0.0.1", [b"6.6.6.6, 198.51.100.7, 10.0.0.2"], "198.51.100.7", id="trusted-hops-skipped"
        ),
        pytest.param(
            "10.0.0.1", [b"6.6.6.6", b"198.51.100.7"], "198.51.100.7", id="several-headers-concatenated"
        ),
        pytest.param(
            "10.0.0.1", [b"6.6.6.6, garbage, 10.0.0.2"], "10.0.0.2", id="unparsable-stops-at-last-trusted"
        ),
        pytest.param("10.0.0.1", [b"6.6.6.6, "], "10.0.0.1", id="empty-element-stops-at-peer"),
        pytest.param(
            "10.0.0.1", [b"6.6.6.6, 198.51.100.7:4711"], "10.0.0.1", id="address-with-port-is-unparsable"
        ),
        pytest.param(
            "10.0.0.1", [b"10.0.0.3, 10.0.0.2"], "10.0.0.3", id="all-trusted-gives-leftmost-trusted"
        ),
        pytest.param("fd00::1", [b"2001:db8::7"], "2001:db8::7", id="ipv6"),
        pytest.param("::ffff:10.0.0.1", [b"198.51.100.7"], "198.51.100.7", id="ipv4-mapped-peer-is-trusted"),
        pytest.param("10.0.0.1", [b"::ffff:10.0.0.9, ::ffff:10.0.0.8"], "10.0.0.9", id="ipv4-mapped-hops"),
        pytest.param("not-an-ip", [b"198.51.100.7"], "not-an-ip", id="unparsable-peer-is-not-trusted"),
    ],
)
def test_client_ip(peer: str, xff: list[bytes], expected: str) -> None:
    headers = [(b"host", b"a")] + [(b"x-forwarded-for", v) for v in xff]
    assert client_ip_from_forwarded(headers, peer, PROXIES) == expected


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_ip_from_forwarded([(b"x-forwarded-for", b"1.2.3.4")], "10.0.0.1", ()) == "10.0.0.1"


def test_xff_header_name_any_case() -> None:
    assert client_ip_from_forwarded([(b"X-Forwarded-For", b"1.2.3.4")], "10.0.0.1", PROXIES) == "1.2.3.4"


def test_only_xff_is_read_not_x_real_ip() -> None:
    headers = [(b"x-real-ip", b"1.2.3.4"), (b"forwarded", b"for=5.6.7.8")]
    assert client_ip_from_forwarded(headers, "10.0.0.1", PROXIES) == "10.0.0.1"
