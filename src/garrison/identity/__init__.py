"""Identity: bearer-JWT verification (keys, tokens, JWKS, cache) and principals (ARCHITECTURE §3, §9)."""

from garrison.identity.authenticator import CachedAuth, JwtAuthenticator, ProviderFactory
from garrison.identity.jwks import JwksProvider, KeyProvider, StaticKeyProvider
from garrison.identity.keys import KeySet, VerificationKey, load_static_keys, parse_jwks
from garrison.identity.principal import identity_from_token, workload_id
from garrison.identity.token_cache import VerifiedTokenCache
from garrison.identity.tokens import ParsedToken, TokenVerifier, VerifiedToken, parse_compact

__all__ = [
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
