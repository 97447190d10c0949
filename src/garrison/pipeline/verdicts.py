"""What a stage returns. ``Continue`` is a value; ``None`` is never a verdict (STYLE §3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from garrison.reasons import Reason

Header = tuple[bytes, bytes]


class Continue:
    """Let the request go on to the next stage."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "CONTINUE"


class Skip:
    """ "Not my credential": an authenticator that does not handle this request."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIP"


CONTINUE: Final = Continue()
SKIP: Final = Skip()


@dataclass(frozen=True, slots=True)
class Deny:
    """End the request with a typed denial. The client sees only ``reason`` and the request id."""

    reason: Reason
    stage: str
    rule_id: str | None = None
    headers: tuple[Header, ...] = ()
    detail: str = field(
        default="", compare=False
    )  # operator-only; goes to the decision log, never to clients

    @property
    def status(self) -> int:
        return self.reason.status


@dataclass(frozen=True, slots=True)
class Respond:
    """End the request with a local response (health checks, redirects)."""

    status: int
    body: bytes = b""
    headers: tuple[Header, ...] = ()


Verdict = Continue | Skip | Deny | Respond

__all__ = ["CONTINUE", "SKIP", "Continue", "Deny", "Header", "Respond", "Skip", "Verdict"]
