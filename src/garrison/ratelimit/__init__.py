"""Rate limiting: token buckets behind a protocol, keys built from the request (ARCHITECTURE §2.4, §2.7)."""

from garrison.ratelimit.bucket import AsyncAdapter, AsyncRateLimiter, RateKey, RateLimiter, TokenBucketLimiter
from garrison.ratelimit.keys import KeyFn, KeyPart, build_key_fn

__all__ = [
    "AsyncAdapter",
    "AsyncRateLimiter",
    "KeyFn",
    "KeyPart",
    "RateKey",
    "RateLimiter",
    "TokenBucketLimiter",
    "build_key_fn",
]
