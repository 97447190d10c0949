"""The public surface of garrison.identity is pinned (STYLE §9)."""

from __future__ import annotations

import garrison.identity


def test_all_is_pinned() -> None:
    assert sorted(garrison.identity.__all__) == [
        "CachedAuth",
        "JwksProvider",
        "JwtAuthenticator",
        "KeyProvider",
        "KeySet",
        "ParsedToken",
        "ProviderFactory",
        "StaticKeyProvider",
        "TokenVerifier",
        "VerificationKey",
        "VerifiedToken",
        "VerifiedTokenCache",
        "identity_from_token",
        "load_static_keys",
        "parse_compact",
        "parse_jwks",
        "workload_id",
    ]


def test_everything_exported_exists() -> None:
    for name in garrison.identity.__all__:
        assert getattr(garrison.identity, name) is not None
