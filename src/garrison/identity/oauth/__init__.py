"""The OAuth2 token service core (ARCHITECTURE §3), sans-IO: client_credentials with private_key_jwt
(RFC 7523) or tls_client_auth (RFC 8705), RFC 9068 access tokens, token exchange (RFC 8693),
introspection (RFC 7662), revocation (RFC 7009), metadata (RFC 8414), rotating signing keys."""

from garrison.identity.oauth.access_tokens import (
    ACCESS_TOKEN_TYPE,
    AT_JWT,
    AccessTokenMinter,
    IssuedToken,
    TokenResponse,
    own_token_verifier,
)
from garrison.identity.oauth.client_auth import (
    ASSERTION_TYPE,
    AuthenticatedClient,
    ClientAuthContext,
    ClientAuthenticator,
    certificate_thumbprint,
    svid_uri,
)
from garrison.identity.oauth.client_credentials import ClientCredentialsGrant
from garrison.identity.oauth.clients import (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_TOKEN_EXCHANGE,
    AuthMethod,
    ClientRegistration,
    ClientRegistry,
    MemoryClientRegistry,
)
from garrison.identity.oauth.errors import ErrorCode, ErrorResponse, OAuthError
from garrison.identity.oauth.grant import TokenEndpoint, TokenGrant
from garrison.identity.oauth.introspection import INACTIVE, IntrospectionEndpoint, IntrospectionResponse
from garrison.identity.oauth.metadata import MetadataEndpoint, ServerSettings, well_known_url
from garrison.identity.oauth.revocation import RevocationEndpoint, RevocationResponse
from garrison.identity.oauth.service import TokenService
from garrison.identity.oauth.signing_keys import KeyState, SigningKey, SigningKeyRing, jwk_thumbprint
from garrison.identity.oauth.state import (
    MemoryOAuthState,
    ReplayStore,
    RevocationStore,
    SealedSigningKey,
    SigningKeyStore,
)
from garrison.identity.oauth.token_exchange import TokenExchangeGrant

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ASSERTION_TYPE",
    "AT_JWT",
    "GRANT_CLIENT_CREDENTIALS",
    "GRANT_TOKEN_EXCHANGE",
    "INACTIVE",
    "AccessTokenMinter",
    "AuthMethod",
    "AuthenticatedClient",
    "ClientAuthContext",
    "ClientAuthenticator",
    "ClientCredentialsGrant",
    "ClientRegistration",
    "ClientRegistry",
    "ErrorCode",
    "ErrorResponse",
    "IntrospectionEndpoint",
    "IntrospectionResponse",
    "IssuedToken",
    "KeyState",
    "MemoryClientRegistry",
    "MemoryOAuthState",
    "MetadataEndpoint",
    "OAuthError",
    "ReplayStore",
    "RevocationEndpoint",
    "RevocationResponse",
    "RevocationStore",
    "SealedSigningKey",
    "ServerSettings",
    "SigningKey",
    "SigningKeyRing",
    "SigningKeyStore",
    "TokenEndpoint",
    "TokenExchangeGrant",
    "TokenGrant",
    "TokenResponse",
    "TokenService",
    "certificate_thumbprint",
    "jwk_thumbprint",
    "own_token_verifier",
    "svid_uri",
    "well_known_url",
]
