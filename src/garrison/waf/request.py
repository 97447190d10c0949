"""The sans-IO values the WAF consumes and returns: a request in, a result out. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class WafRequest:
    """One HTTP request as the WAF sees it.

    ``uri`` is the raw request-target (path and query, undecoded); header names and values are
    latin-1 text so that every byte survives; ``content_type`` overrides the Content-Type header.
    """

    method: str
    uri: str
    http_version: str = "HTTP/1.1"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    content_type: str | None = None
    remote_addr: str = "127.0.0.1"

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule (or a whole chain) that matched and is logged; ``rule_id`` is the chain starter's id."""

    rule_id: int
    phase: int
    msg: str
    logdata: str
    severity: str | None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WafResult:
    """What inspecting one request found.

    ``would_block`` is true when a disruptive action fired (or, in detection-only mode, would have);
    ``blocking_rule`` names the rule whose disruptive action it was.
    """

    matches: tuple[RuleMatch, ...]
    anomaly_score: int
    would_block: bool
    blocking_rule: int | None = None
    detection_only: bool = False
    tx: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def matched_ids(self) -> frozenset[int]:
        return frozenset(m.rule_id for m in self.matches)

    @property
    def blocked(self) -> bool:
        """True when the request must be refused (blocking mode and a disruptive action fired)."""
        return self.would_block and not self.detection_only


__all__ = ["RuleMatch", "WafRequest", "WafResult"]
