"""Token buckets: burst, refill over injected time, retry-after, bounded keys."""

from __future__ import annotations

import asyncio

import pytest

from garrison.ratelimit import AsyncAdapter, AsyncRateLimiter, RateLimiter, TokenBucketLimiter


def test_a_full_burst_is_allowed_then_the_next_hit_is_denied() -> None:
    limiter = TokenBucketLimiter(rate=1.0, burst=3, max_keys=10)
    assert [limiter.hit("k", now=100.0)[0] for _ in range(3)] == [True, True, True]
    allowed, retry_after = limiter.hit("k", now=100.0)
    assert not allowed
    assert retry_after == pytest.approx(1.0)


def test_tokens_refill_continuously_at_the_rate() -> None:
    limiter = TokenBucketLimiter(rate=2.0, burst=2, max_keys=10)
    limiter.hit("k", 0.0)
    limiter.hit("k", 0.0)
    assert not limiter.hit("k", 0.0)[0]
    assert not limiter.hit("k", 0.4)[0]  # 0.8 tokens
    assert limiter.hit("k", 0.5)[0]  # 1.0 token
    assert not limiter.hit("k", 0.5)[0]


def test_refill_is_capped_at_the_burst() -> None:
    limiter = TokenBucketLimiter(rate=10.0, burst=2, max_keys=10)
    limiter.hit("k", 0.0)
    allowed = [limiter.hit("k", 1000.0)[0] for _ in range(3)]
    assert allowed == [True, True, False]


@pytest.mark.parametrize(
    ("rate", "burst", "wait", "retry_after"),
    [
        pytest.param(1.0, 1, 0.0, 1.0, id="empty-bucket-one-token-per-second"),
        pytest.param(4.0, 1, 0.0, 0.25, id="faster-rate-shorter-wait"),
        pytest.param(1.0, 1, 0.75, 0.25, id="partly-refilled"),
        pytest.param(0.5, 2, 0.0, 2.0, id="slow-rate"),
    ],
)
def test_retry_after_is_the_time_until_enough_tokens(
    rate: float, burst: int, wait: float, retry_after: float
) -> None:
    limiter = TokenBucketLimiter(rate=rate, burst=burst, max_keys=10)
    for _ in range(burst):
        assert limiter.hit("k", 10.0)[0]
    allowed, after = limiter.hit("k", 10.0 + wait)
    assert not allowed
    assert after == pytest.approx(retry_after)
    assert limiter.hit("k", 10.0 + wait + after)[0]  # waiting exactly that long is enough


def test_allowed_hits_report_no_wait() -> None:
    assert TokenBucketLimiter(rate=1.0, burst=1, max_keys=1).hit("k", 0.0) == (True, 0.0)


def test_cost_takes_several_tokens() -> None:
    limiter = TokenBucketLimiter(rate=1.0, burst=5, max_keys=10)
    assert limiter.hit("k", 0.0, cost=4.0)[0]
    allowed, retry_after = limiter.hit("k", 0.0, cost=2.0)
    assert not allowed
    assert retry_after == pytest.approx(1.0)
    with pytest.raises(ValueError, match="exceeds burst"):
        limiter.hit("k", 0.0, cost=6.0)


def test_different_keys_have_independent_buckets() -> None:
    limiter = TokenBucketLimiter(rate=1.0, burst=1, max_keys=10)
    assert limiter.hit(("10.0.0.1",), 0.0)[0]
    assert not limiter.hit(("10.0.0.1",), 0.0)[0]
    assert limiter.hit(("10.0.0.2",), 0.0)[0]
    assert limiter.hit("10.0.0.1", 0.0)[0]  # a str key is not the 1-tuple key


def test_keys_are_bounded_and_the_least_recently_hit_is_dropped() -> None:
    limiter = TokenBucketLimiter(rate=1.0, burst=1, max_keys=2)
    limiter.hit("a", 0.0)
    limiter.hit("b", 0.0)
    limiter.hit("a", 0.0)  # a is now the most recent
    limiter.hit("c", 0.0)  # evicts b
    assert len(limiter) == 2
    assert not limiter.hit("a", 0.0)[0]  # a's empty bucket was kept
    assert limiter.hit("b", 0.0)[0]  # b came back full


def test_a_clock_stepping_back_refills_nothing() -> None:
    limiter = TokenBucketLimiter(rate=1.0, burst=1, max_keys=10)
    limiter.hit("k", 100.0)
    assert not limiter.hit("k", 50.0)[0]
    assert not limiter.hit("k", 100.5)[0]
    assert limiter.hit("k", 101.0)[0]


@pytest.mark.parametrize(
    "args",
    [(0.0, 1, 1), (-1.0, 1, 1), (1.0, 0, 1), (1.0, 1, 0)],
    ids=["zero-rate", "negative-rate", "no-burst", "no-keys"],
)
def test_nonsense_settings_are_refused(args: tuple[float, int, int]) -> None:
    with pytest.raises(ValueError, match="rate must be"):
        TokenBucketLimiter(*args)


def test_repr_shows_settings_and_occupancy() -> None:
    limiter = TokenBucketLimiter(rate=10.0, burst=20, max_keys=100)
    limiter.hit("a", 0.0)
    assert repr(limiter) == "<TokenBucketLimiter rate=10/s burst=20 keys=1/100>"


def test_sync_limiter_satisfies_the_protocols_and_can_be_awaited() -> None:
    limiter: RateLimiter = TokenBucketLimiter(rate=1.0, burst=1, max_keys=10)
    shared: AsyncRateLimiter = AsyncAdapter(limiter)
    assert asyncio.run(shared.hit("k", 0.0)) == (True, 0.0)
    assert asyncio.run(shared.hit("k", 0.0)) == (False, 1.0)
