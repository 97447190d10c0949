"""The per-request state that stages read and fill. Plain slotted classes: no pydantic on the hot path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from garrison.pipeline.verdicts import Deny, Header

if TYPE_CHECKING:
    from garrison.pipeline.route import Route


@dataclass(frozen=True, slots=True)
class Identity:
    """A proven principal (ARCHITECTURE §9): a workload's SPIFFE ID, or ``issuer#subject`` for a user."""

    principal: str
    kind: str  # "workload" | "user"
    issuer: str
    subject: str
    method: str  # "jwt" | "mtls"
    claims: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    scopes: frozenset[str] = frozenset()
    expires_at: float | None = None


class RequestContext:
    """One request as the pipeline sees it. ``path`` is normalized; ``raw_target`` is what was sent."""

    __slots__ = (
        "client_addr",
        "client_ip",
        "decision",
        "framing",
        "headers",
        "host",
        "host_header",
        "http_version",
        "identity",
        "method",
        "now",
        "path",
        "peer_cert_der",
        "peer_cert_x5t",
        "query",
        "raw_target",
        "request_id",
        "response_headers",
        "route",
        "rule_id",
        "shadow_denials",
        "tls",
        "traceparent",
        "upstream_headers",
        "upstream_raw",
    )

    def __init__(
        self,
        *,
        method: str,
        raw_target: bytes,
        headers: list[Header],
        client_addr: str,
        request_id: str,
        now: float,
        tls: bool = False,
        peer_cert_der: bytes | None = None,
        peer_cert_x5t: str | None = None,
    ) -> None:
        self.method = method
        self.http_version = "1.1"
        self.raw_target = raw_target
        self.headers = headers  # names lower-cased bytes, values bytes, in arrival order
        self.client_addr = client_addr
        self.client_ip = client_addr  # replaced by the hygiene stage when a trusted proxy forwarded it
        self.request_id = request_id
        self.now = now
        self.tls = tls
        self.peer_cert_der = peer_cert_der
        # RFC 8705 §3.1 thumbprint of the client certificate, computed once per connection by the server
        self.peer_cert_x5t = peer_cert_x5t
        self.path = ""
        self.query = b""
        self.host = ""  # lower-case, without port (for matching)
        self.host_header: bytes = b""  # the validated Host value as sent (forwarded upstream)
        self.framing: Any = None  # set by the hygiene stage: content_length / chunked of the request body
        self.route: Route | None = None
        self.identity: Identity | None = None
        self.decision: Deny | None = None
        self.rule_id: str | None = None  # the allow rule that let the request through
        self.shadow_denials: list[Deny] = []
        self.upstream_headers: list[Header] = []  # set by garrison only, added after stripping
        # The same, already rendered ("name: value\r\n" lines; the forward stage's identity, request id,
        # trace and forwarding headers), sent after ``upstream_headers``.
        self.upstream_raw = b""
        self.response_headers: list[Header] = []
        self.traceparent: bytes | None = None

    def header(self, name: bytes) -> bytes | None:
        """First value of a header (``name`` lower-case), or None."""
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def header_values(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]

    def __repr__(self) -> str:
        return f"<RequestContext {self.request_id} {self.method} {self.path or self.raw_target!r}>"


__all__ = ["Identity", "RequestContext"]
