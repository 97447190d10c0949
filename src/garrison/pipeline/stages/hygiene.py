"""Stage: strict framing, Host, path normalization and header sanitizing — before anything matches.

Runs first, for every request, whatever the route. Nothing after it sees a raw path or a header a
client could use to impersonate a proxy or an identity.
"""

from __future__ import annotations

import ipaddress
from typing import ClassVar

from garrison.errors import HttpError
from garrison.http.framing import check_framing, check_host
from garrison.http.headers import client_ip_from_forwarded, sanitize_request_headers
from garrison.http.paths import normalize_path, split_target, target_host
from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import Stage
from garrison.pipeline.verdicts import CONTINUE, Deny, Verdict
from garrison.proxy.forward import BodyFraming
from garrison.reasons import Reason

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Hygiene(Stage):
    name: ClassVar[str] = "hygiene"
    enforcing: ClassVar[bool] = False  # never shadowed: a request we cannot parse safely is not forwarded

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

    async def on_request(self, ctx: RequestContext) -> Verdict:
        try:
            framing = check_framing(ctx.headers, http_version=ctx.http_version)
            if framing.content_length is not None and framing.content_length > self.max_body_bytes:
                return Deny(Reason.BODY_TOO_LARGE, self.name)
            ctx.framing = BodyFraming(framing.content_length, framing.chunked)
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
