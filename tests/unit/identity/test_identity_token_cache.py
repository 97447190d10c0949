"""VerifiedTokenCache: expiry at exp, bounded LRU, eviction hook, no raw tokens held."""

from __future__ import annotations

import pytest

from garrison.identity.token_cache import VerifiedTokenCache, token_key

NOW = 1_000.0


def test_a_hit_returns_the_stored_value_until_exp() -> None:
    cache: VerifiedTokenCache[str] = VerifiedTokenCache(10)
    cache.put(b"tok", "value", expires_at=NOW + 10, now=NOW)
    assert cache.get(b"tok", NOW) == "value"
    assert cache.get(b"tok", NOW + 9.999) == "value"
    assert cache.get(b"tok", NOW + 10) is None  # expires exactly at exp: no leeway added here
    assert len(cache) == 0
    assert (cache.hits, cache.misses) == (2, 1)


def test_an_already_expired_value_is_not_stored() -> None:
    cache: VerifiedTokenCache[str] = VerifiedTokenCache(10)
    cache.put(b"tok", "value", expires_at=NOW, now=NOW)
    assert len(cache) == 0


def test_other_tokens_miss() -> None:
    cache: VerifiedTokenCache[str] = VerifiedTokenCache(10)
    cache.put(b"tok", "value", expires_at=NOW + 10, now=NOW)
    assert cache.get(b"tok2", NOW) is None
    assert cache.get(b"to", NOW) is None


def test_size_is_bounded_and_the_least_recently_used_goes_first() -> None:
    cache: VerifiedTokenCache[int] = VerifiedTokenCache(3)
    for i in range(3):
        cache.put(b"t%d" % i, i, NOW + 10, NOW)
    assert cache.get(b"t0", NOW) == 0  # t0 is now the most recent; t1 is the oldest
    cache.put(b"t3", 3, NOW + 10, NOW)
    assert len(cache) == 3
    assert cache.get(b"t1", NOW) is None
    assert [cache.get(b"t%d" % i, NOW) for i in (0, 2, 3)] == [0, 2, 3]
    for i in range(100):
        cache.put(b"x%d" % i, i, NOW + 10, NOW)
    assert len(cache) == 3


def test_evict_where_drops_matching_entries() -> None:
    cache: VerifiedTokenCache[str] = VerifiedTokenCache(10)
    for name in ("a1", "a2", "b1"):
        cache.put(name.encode(), name, NOW + 10, NOW)
    assert cache.evict_where(lambda v: v.startswith("a")) == 2
    assert cache.get(b"b1", NOW) == "b1"
    assert cache.get(b"a1", NOW) is None


def test_the_cache_holds_hashes_not_bearer_tokens() -> None:
    cache: VerifiedTokenCache[str] = VerifiedTokenCache(10)
    cache.put(b"eyJsecret.token.sig", "v", NOW + 10, NOW)
    assert list(cache._entries) == [token_key(b"eyJsecret.token.sig")]
    assert len(token_key(b"x")) == 32


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError):
        VerifiedTokenCache(0)
