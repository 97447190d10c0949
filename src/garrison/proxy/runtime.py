"""The compiled, immutable form of a config that the server runs on. Swapped whole on reload."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from garrison.config.models import GarrisonConfig, Limits
from garrison.pipeline.chain import Chain
from garrison.pipeline.context import RequestContext
from garrison.pipeline.router import Router
from garrison.proxy.upstream import Pools
from garrison.reasons import Reason

Observer = Callable[[RequestContext, int, float], None]


@dataclass(eq=False)
class Runtime:
    """Everything a request needs, built once per config load (STYLE §7)."""

    config: GarrisonConfig
    limits: Limits
    pre: Chain  # hygiene + routing; the route's own chain runs next
    router: Router
    pools: Pools
    observe: Observer  # per-request telemetry (metrics + decision record)
    on_upstream_error: Callable[[str, Reason], None] = field(default=lambda route, reason: None)
    on_reject: Callable[[Reason, str, str], None] = field(default=lambda reason, ip, rid: None)
    generation: int = 0

    def upstream_error(self, route: str, reason: Reason) -> None:
        self.on_upstream_error(route, reason)

    def observe_reject(self, reason: Reason, client_ip: str, request_id: str) -> None:
        """A request refused at parse level (before a RequestContext existed)."""
        self.on_reject(reason, client_ip, request_id)

    def __repr__(self) -> str:
        return f"<Runtime gen={self.generation} routes={len(self.config.routes)} {self.pre!r}>"


__all__ = ["Observer", "Runtime"]
