"""A route as compiled at config load: what it matches and where it forwards. Immutable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from garrison.pipeline.chain import Chain


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where a route forwards: plain host/port for now (mTLS upstreams come with the sidecar)."""

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Upstream:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http",):
            raise ValueError(f"upstream must be http://host:port, got {url!r}")
        hostport = rest.split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"upstream must name host and port, got {url!r}")
        return cls(scheme, host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Route:
    """``pattern`` is an exact normalized path, or a prefix when ``prefix`` is true (config ``/api/**``).

    A prefix route ``/api/**`` matches ``/api`` and everything below ``/api/``.
    """

    name: str
    pattern: str
    prefix: bool
    methods: frozenset[str]
    host: str | None  # lower-case, no port; None = any host
    upstream: Upstream
    service: str | None = None
    public: bool = False
    issuers: tuple[str, ...] | None = None
    strip_prefix: str | None = None
    security_headers: bool = True
    mask_upstream_errors: bool = True
    chain: Chain | None = field(default=None, compare=False)

    @property
    def path(self) -> str:
        return self.pattern + "/**" if self.prefix else self.pattern

    def matches_path(self, path: str) -> bool:
        if not self.prefix:
            return path == self.pattern
        p = self.pattern
        return path == p or (path.startswith(p) and (p == "/" or path[len(p)] == "/")) or p == ""

    def __repr__(self) -> str:
        methods = "/".join(sorted(self.methods))
        return f"<Route {self.name} {methods} {self.host or '*'}{self.path} -> {self.upstream}>"


__all__ = ["Route", "Upstream"]
