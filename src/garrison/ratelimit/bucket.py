"""Token buckets kept in process memory, bounded in keys. Sans-IO: the caller passes ``now``.

``RateLimiter`` is the contract the rate-limit stage calls. The shared (Redis) mode of a later issue
implements it, or ``AsyncRateLimiter`` when it awaits, with one atomic Lua script per hit.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

RateKey = str | tuple[object, ...]


class RateLimiter(Protocol):
    """Take ``cost`` tokens from ``key``'s bucket: ``(allowed, retry_after_seconds)``.

    ``retry_after_seconds`` is 0.0 when allowed, else the wait until ``cost`` tokens are there.
    A shared implementation must make the read-refill-take one atomic step (a Redis Lua script), or two
    gateways could both spend the last token.
    """

    def hit(self, key: RateKey, now: float, cost: float = 1.0) -> tuple[bool, float]: ...


class AsyncRateLimiter(Protocol):
    """``RateLimiter`` for backends that must await (Redis). Same arguments, same result."""

    async def hit(self, key: RateKey, now: float, cost: float = 1.0) -> tuple[bool, float]: ...


class AsyncAdapter:
    """Present a sync ``RateLimiter`` as an ``AsyncRateLimiter``, so a stage can await either kind."""

    __slots__ = ("limiter",)

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def hit(self, key: RateKey, now: float, cost: float = 1.0) -> tuple[bool, float]:
        return self.limiter.hit(key, now, cost)

    def __repr__(self) -> str:
        return f"<AsyncAdapter {self.limiter!r}>"


class TokenBucketLimiter:
    """One token bucket per key: starts full at ``burst``, refills at ``rate`` tokens/s, capped at ``burst``.

    At most ``max_keys`` buckets are kept; beyond that the least recently hit one is dropped (it comes
    back full, which errs towards allowing a key idle long enough to be evicted). A clock that steps
    back refills nothing.
    """

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: int, max_keys: int) -> None:
        if not rate > 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be > 0, burst and max_keys >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[RateKey, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def hit(self, key: RateKey, now: float, cost: float = 1.0) -> tuple[bool, float]:
        if cost > self.burst:
            raise ValueError(f"cost {cost} exceeds burst {self.burst:g}: it could never be allowed")
        buckets = self._buckets
        state = buckets.get(key)
        if state is None:
            if len(buckets) >= self.max_keys:
                buckets.popitem(last=False)
            tokens, at = self.burst, now
        else:
            buckets.move_to_end(key)
            tokens, at = state
            if now > at:
                tokens = min(self.burst, tokens + (now - at) * self.rate)
                at = now
        if tokens >= cost:
            buckets[key] = (tokens - cost, at)
            return True, 0.0
        buckets[key] = (tokens, at)
        return False, (cost - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def __repr__(self) -> str:
        return (
            f"<TokenBucketLimiter rate={self.rate:g}/s burst={self.burst:g} keys={len(self)}/{self.max_keys}>"
        )


__all__ = ["AsyncAdapter", "AsyncRateLimiter", "RateKey", "RateLimiter", "TokenBucketLimiter"]
