"""Stage: token-bucket rate limits (pre-auth by client address, post-auth by identity/route/claim)."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import ClassVar

from garrison.pipeline.context import RequestContext
from garrison.pipeline.stage import Stage
from garrison.pipeline.verdicts import CONTINUE, Deny, Verdict
from garrison.ratelimit.bucket import RateLimiter
from garrison.reasons import Reason

KeyFn = Callable[[RequestContext], Hashable | None]


class RateLimit(Stage):
    """Applies each configured limit whose key can be formed; 429 with Retry-After when one is empty."""

    name: ClassVar[str] = "rate_limit"
    sync: ClassVar[bool] = True

    __slots__ = ("limits",)

    def __init__(self, limits: tuple[tuple[str, RateLimiter, KeyFn], ...], *, shadow: bool = False) -> None:
        super().__init__(shadow=shadow)
        self.limits = limits

    def check(self, ctx: RequestContext) -> Verdict:
        now = ctx.now
        for rule_id, limiter, key_fn in self.limits:
            key = key_fn(ctx)
            if key is None:
                continue
            allowed, retry_after = limiter.hit((rule_id, key), now)
            if not allowed:
                wait = str(max(1, math.ceil(retry_after))).encode()
                return Deny(Reason.RATE_LIMITED, self.name, rule_id, ((b"retry-after", wait),))
        return CONTINUE

    def __repr__(self) -> str:
        return f"<RateLimit {[r for r, _, _ in self.limits]}{' shadow' if self.shadow else ''}>"


__all__ = ["KeyFn", "RateLimit"]
