"""Join tokens: one-time, short-lived bootstrap secrets, each bound to one SPIFFE ID.

No I/O. The store keeps only SHA-256(token): a token has 256 random bits, so a plain hash is
enough to make a database leak useless, and lookups stay one indexed equality.
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "gjt_"  # recognisable by secret scanners
DEFAULT_TTL = 600.0  # 10 min
MAX_TTL = 86_400.0  # a day: a join token is a bootstrap secret, not a credential


def new_join_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_join_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_join_token(token: str) -> bool:
    """A cheap shape check before touching the store (length, prefix, alphabet)."""
    body = token[len(PREFIX) :]
    return token.startswith(PREFIX) and len(body) == 43 and all(c.isalnum() or c in "-_" for c in body)


def check_ttl(ttl: float) -> float:
    if not 0 < ttl <= MAX_TTL:
        raise ValueError(f"join token TTL must be in (0, {MAX_TTL:g}] seconds, got {ttl:g}")
    return ttl


__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "PREFIX",
    "check_ttl",
    "hash_join_token",
    "looks_like_join_token",
    "new_join_token",
]
