"""Stage: strict framing, Host, path normalization and header sanitizing — before anything matches.

Runs first, for every request, whatever the route. Nothing after it sees a raw path or a header a
client could use to impersonate a proxy or an identity.

The common clean request (origin-form target, one Host, only well-known header names that ingress
stripping keeps, no body) is checked in one pass over its headers and keeps its header list as is;
anything else takes the full path. Both paths apply the same rules: the fast one only recognizes
requests on which the full path would change nothing but the checks it repeats.
"""

from __future__ import annotations

import ipaddress
from typing import ClassVar, Final

from garrison.errors import HttpError
from garrison.http.framing import NO_BODY, ORDINARY_NAMES, check_framing, check_host, parse_host
from garrison.http.headers import client_ip_from_forwarded, plain_names, sanitize_request_headers
from garrison.http.paths import normalize_path, split_target, target_host
from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import Stage
from garrison.pipeline.verdicts import CONTINUE, Deny, Verdict
from garrison.reasons import Reason

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Names with no framing role that sanitizing keeps for any peer (so never "host": it is counted apart).
_PLAIN: Final = plain_names(ORDINARY_NAMES) - {b"host"}
_OWS_FIRST: Final = frozenset((b" ", b"\t"))


# Origin-form targets already split and normalized (pure functions of the bytes; only successes are
# kept). Targets repeat across requests; the bound caps what a client can make it hold.
_TARGETS: dict[bytes, tuple[str, bytes]] = {}
_TARGETS_MAX: Final = 4096


def _split_and_normalize(raw_target: bytes) -> tuple[str, bytes]:
    raw_path, query = split_target(raw_target)
    target = (normalize_path(raw_path), query)
    if len(_TARGETS) >= _TARGETS_MAX:
        _TARGETS.clear()
    _TARGETS[raw_target] = target
    return target


class Hygiene(Stage):
    name: ClassVar[str] = "hygiene"
    enforcing: ClassVar[bool] = False  # never shadowed: a request we cannot parse safely is not forwarded
    sync: ClassVar[bool] = True

    __slots__ = ("max_body_bytes", "trusted_proxies")

    def __init__(self, *, trusted_proxies: tuple[Network, ...], max_body_bytes: int) -> None:
        super().__init__()
        self.trusted_proxies = trusted_proxies
        self.max_body_bytes = max_body_bytes

    def _trusted(self, ip: str) -> bool:
        if not self.trusted_proxies:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
        return any(addr in net for net in self.trusted_proxies)

    def check(self, ctx: RequestContext) -> Verdict:
        if not self.trusted_proxies and ctx.raw_target[:1] == b"/":
            # Fast path: every name plain, exactly one Host, no obs-fold, no CR/LF/NUL in any value.
            host: bytes | None = None
            hosts = 0
            values: list[bytes] = []
            plain, ows_first, append = _PLAIN, _OWS_FIRST, values.append
            for name, value in ctx.headers:
                if name in plain:
                    pass
                elif name == b"host":
                    host = value
                    hosts += 1
                else:
                    break
                if value[:1] in ows_first:
                    break
                append(value)
            else:
                blob = b"".join(values)
                if hosts == 1 and 13 not in blob and 10 not in blob and 0 not in blob:
                    assert host is not None
                    try:
                        ctx.host = parse_host(host)
                        target = _TARGETS.get(ctx.raw_target)
                        if target is None:
                            target = _split_and_normalize(ctx.raw_target)
                        ctx.path, ctx.query = target
                    except HttpError as exc:
                        return Deny(exc.reason, self.name, detail=str(exc))
                    ctx.framing = NO_BODY
                    ctx.host_header = host
                    return CONTINUE
        return self._full(ctx)

    def _full(self, ctx: RequestContext) -> Verdict:
        try:
            framing = check_framing(ctx.headers, http_version=ctx.http_version)
            if framing.content_length is not None and framing.content_length > self.max_body_bytes:
                return Deny(Reason.BODY_TOO_LARGE, self.name)
            ctx.framing = framing
            # RFC 9112 §3.2.2: an absolute-form target's authority must agree with Host.
            ctx.host = check_host(ctx.headers, target_host=target_host(ctx.raw_target))
            raw_path, ctx.query = split_target(ctx.raw_target)
            ctx.path = normalize_path(raw_path)
        except HttpError as exc:
            return Deny(exc.reason, self.name, detail=str(exc))
        ctx.host_header = ctx.header(b"host") or b""
        trusted = self._trusted(ctx.client_addr)
        if trusted:
            ctx.client_ip = client_ip_from_forwarded(ctx.headers, ctx.client_addr, self.trusted_proxies)
        ctx.headers = sanitize_request_headers(ctx.headers, trusted_peer=trusted)
        return CONTINUE

    def __repr__(self) -> str:
        return f"<Hygiene trusted_proxies={len(self.trusted_proxies)} max_body={self.max_body_bytes}>"


__all__ = ["Hygiene"]
