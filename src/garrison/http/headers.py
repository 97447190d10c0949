"""Header sets and ingress stripping: hop-by-hop (RFC 9110 §7.6.1), spoofable, and the client address.

Every header a backend might trust as a statement *by the gateway* (identity, client address, original
URL, method override) is stripped on the way in; only the gateway sets its own, after stripping.
No I/O here. Names are compared case-insensitively, with "_" read as "-" (CGI/WSGI servers map both
``X-User`` and ``X_User`` to ``HTTP_X_USER``).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final

Header = tuple[bytes, bytes]

# The gateway's own statements to the upstream. Only garrison sets these, and only after
# sanitize_request_headers has removed every inbound copy (they all match "x-garrison-").
IDENTITY_HEADERS: Final = (
    b"x-garrison-principal",
    b"x-garrison-subject",
    b"x-garrison-issuer",
    b"x-garrison-scopes",
    b"x-garrison-auth-method",
    b"x-garrison-request-id",
)

# RFC 9110 §7.6.1: connection-specific fields a proxy must not forward (plus the non-standard
# keep-alive and proxy-connection, and the RFC 9110 §11.7 proxy authentication pair).
HOP_BY_HOP: Final = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    )
)
# A client may name any field in Connection (RFC 9110 §7.6.1) and so have a proxy drop it; these are
# never dropped that way, because the forwarded message would lose its framing or its target.
_NOT_DROPPABLE_BY_CONNECTION: Final = frozenset((b"host", b"content-length"))

# Kept from a trusted proxy (the client address chain and the original scheme/host), stripped otherwise.
FORWARDING_HEADERS: Final = frozenset(
    (b"x-forwarded-for", b"forwarded", b"x-forwarded-proto", b"x-forwarded-host")
)

_SPOOFABLE_EXACT: Final = frozenset(
    (
        # client address, as various proxies and CDNs state it
        b"x-real-ip", b"x-client-ip", b"true-client-ip", b"x-cluster-client-ip", b"x-originating-ip",
        b"cf-connecting-ip", b"fastly-client-ip",
        # the original URL (IIS URL Rewrite, Symfony, nginx setups): a path an ACL never saw
        b"x-original-url", b"x-rewrite-url", b"x-original-uri",
        # identity asserted by an auth proxy
        b"remote-user", b"x-spiffe-id", b"x-email", b"x-access-token", b"x-id-token",
        # method override: lets a backend run a method the router and policy did not see
        b"x-http-method-override", b"x-http-method", b"x-method-override",
    )
)  # fmt: skip
_SPOOFABLE_PREFIXES: Final = (
    "x-garrison-",
    "x-forwarded-",  # -for/-proto/-host/-user/-email/-groups/-access-token/-client-cert, ...
    "x-user",  # x-user, x-user-id, x-username, x-userinfo
    "x-auth-",  # includes oauth2-proxy's x-auth-request-*
    "x-jwt-",
    "x-client-cert",
    "x-ssl-",
    "x-amzn-oidc-",
    "x-ms-client-principal",
    "x-goog-authenticated-user-",
    "x-pomerium-",
    "x-principal",
    "x-remote-",  # x-remote-user, x-remote-group, x-remote-addr
    "x-webauth-",  # Grafana's auth proxy default
    "x-authenticated-",  # Kong: x-authenticated-userid / -scope / -groups
    "x-consumer-",  # Kong
    "x-credential-",  # Kong
    "x-envoy-",  # Envoy trusts these from internal peers
)

_KEEP: Final = 0
_HOP: Final = 1
_FORWARDING: Final = 2
_SPOOFABLE: Final = 3


@lru_cache(maxsize=4096)  # names repeat across requests; the bound caps what a client can make it hold
def _classify(name: bytes) -> int:
    text = name.decode("latin-1").lower()
    folded = text.replace("_", "-")
    key = folded.encode("latin-1")
    if text == folded and key in HOP_BY_HOP:
        return _HOP
    if text == folded and key in FORWARDING_HEADERS:
        return _FORWARDING
    # "x_forwarded_for", "transfer_encoding": never a trusted proxy's spelling, so always stripped.
    if key in HOP_BY_HOP or key in FORWARDING_HEADERS or key in _SPOOFABLE_EXACT:
        return _SPOOFABLE
    return _SPOOFABLE if folded.startswith(_SPOOFABLE_PREFIXES) else _KEEP


def is_spoofable(name: bytes) -> bool:
    """True if a client must not be able to send ``name`` to an upstream (stripped at ingress)."""
    return _classify(name) >= _FORWARDING


def connection_options(headers: list[Header]) -> frozenset[bytes]:
    """The lower-case field names listed in every ``Connection`` header (RFC 9110 §7.6.1)."""
    listed: set[bytes] = set()
    for name, value in headers:
        if _classify(name) == _HOP and name.lower() == b"connection":
            listed.update(t.strip(b" \t").lower() for t in value.split(b","))
    listed.discard(b"")
    return frozenset(listed)


def sanitize_request_headers(headers: list[Header], *, trusted_peer: bool) -> list[Header]:
    """A new list without hop-by-hop, Connection-listed and spoofable headers, order kept.

    With ``trusted_peer`` (the connection comes from a configured trusted proxy), the forwarding headers
    (``FORWARDING_HEADERS``) are kept; identity headers and ``x-garrison-*`` are stripped regardless.
    """
    out: list[Header] = []
    saw_hop_by_hop = False
    for header in headers:
        kind = _classify(header[0])
        if kind == _KEEP or (kind == _FORWARDING and trusted_peer):
            out.append(header)
        elif kind == _HOP:
            saw_hop_by_hop = True
    if saw_hop_by_hop:
        drop = connection_options(headers) - HOP_BY_HOP - _NOT_DROPPABLE_BY_CONNECTION
        if drop:
            out = [h for h in out if h[0].lower() not in drop]
    return out


def plain_names(candidates: frozenset[bytes] | set[bytes]) -> frozenset[bytes]:
    """Those of ``candidates`` (lower-case names) that ingress stripping keeps as they are, whoever the
    peer: not hop-by-hop, not forwarding, not spoofable. A request whose names are all plain needs no
    sanitizing (unless its Connection header names one of them, and Connection is not plain)."""
    return frozenset(n for n in candidates if n == n.lower() and _classify(n) == _KEEP)


def _parse_ip(text: str) -> IPv4Address | IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # "::ffff:10.0.0.1" from a dual-stack socket is the IPv4 peer
    return ip


def _is_trusted(ip: IPv4Address | IPv6Address, trusted: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    return any(ip in net for net in trusted)


def client_ip_from_forwarded(
    headers: list[Header], peer_ip: str, trusted: tuple[IPv4Network | IPv6Network, ...]
) -> str:
    """The client address: ``peer_ip`` unless the peer is a trusted proxy, then from X-Forwarded-For.

    X-Forwarded-For (all such headers, in order) is read from the right, skipping trusted proxies; the
    first untrusted address is the client. An unparsable element ends the walk at the last trusted hop:
    the leftmost value is whatever the client wrote, so it is never taken on faith
    (oauth2-proxy GHSA-7x63-xv5r-3p2x).
    """
    if not trusted:
        return peer_ip
    peer = _parse_ip(peer_ip)
    if peer is None or not _is_trusted(peer, trusted):
        return peer_ip
    hops: list[bytes] = []
    for name, value in headers:
        if name.lower() == b"x-forwarded-for":
            hops.extend(value.split(b","))
    last_good = peer_ip
    for raw in reversed(hops):
        ip = _parse_ip(raw.strip(b" \t").decode("latin-1"))
        if ip is None:
            return last_good
        if not _is_trusted(ip, trusted):
            return str(ip)
        last_good = str(ip)
    return last_good


__all__ = [
    "FORWARDING_HEADERS",
    "HOP_BY_HOP",
    "IDENTITY_HEADERS",
    "client_ip_from_forwarded",
    "connection_options",
    "is_spoofable",
    "plain_names",
    "sanitize_request_headers",
]
