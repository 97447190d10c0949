"""The bearer-JWT logic of the authn stage: header -> cache -> verify -> ``ctx.identity``.

Per request: no I/O except an unknown-kid refetch (single-flight, rate-limited, in ``jwks``).
Denials carry a Reason for the client and an operator-only ``detail``; the token never appears in either.

Two checks run on every request, cache hit or not, because their inputs change without the token
changing: RFC 8705 §3 certificate binding (``cnf.x5t#S256`` against the connection's client
certificate) and, for issuers with ``revocations: true``, the control plane's revoked ``jti`` set.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, Self

from garrison.config.models import Issuer
from garrison.errors import ConfigError, IdentityError, KeySetError
from garrison.identity.jwks import JwksProvider, KeyProvider, StaticKeyProvider, ca_context
from garrison.identity.keys import KeySet
from garrison.identity.principal import identity_from_token
from garrison.identity.token_cache import VerifiedTokenCache
from garrison.identity.tokens import TokenVerifier, VerifiedToken, parse_compact
from garrison.pipeline.context import Identity, RequestContext
from garrison.pipeline.verdicts import CONTINUE, SKIP, Deny, Verdict
from garrison.reasons import Reason

STAGE = "authn"
# RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token; we accept exactly one SP and one b64token.
# The scheme is case-insensitive (RFC 9110 §11.1). The token's charset is checked on a cache miss
# only: a hit means these exact bytes were checked (and verified) before.
_B64TOKEN = re.compile(rb"[A-Za-z0-9._~+/-]+=*")
# RFC 9110 §11.4: auth-scheme = token. A well-formed credential of another scheme is not ours.
_OTHER_SCHEME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+(?: [\x21-\x7e][\x20-\x7e]*)?")

ProviderFactory = Callable[[Issuer, Callable[[KeySet], None]], KeyProvider]


class RevokedJtis(Protocol):
    """Where revoked token ids come from (``proxy.trust.TrustPuller``); read once per request."""

    @property
    def revoked_jtis(self) -> frozenset[str]: ...


class _Unchecked:
    revoked_jtis: frozenset[str] = frozenset()


# For offline tools (``garrison policy explain``) that have no trust document: revoked tokens pass.
# Named for what it gives up; the gateway always passes its trust puller instead.
UNCHECKED_REVOCATIONS: RevokedJtis = _Unchecked()


class CachedAuth(NamedTuple):
    token: VerifiedToken
    identity: Identity
    x5t: str | None = None  # RFC 8705 cnf."x5t#S256": the certificate this token is bound to
    jti: str | None = None  # set only for issuers whose revocations we check


class _IssuerEntry(NamedTuple):
    name: str
    verifier: TokenVerifier
    provider: KeyProvider
    workloads: bool  # may this issuer's `sub` name a workload (a SPIFFE ID)?
    revocations: bool = False


def cert_thumbprint(der: bytes) -> str:
    """RFC 8705 §3.1: base64url (no padding) of the SHA-256 of the DER certificate."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def _confirmation(claims: dict[str, Any]) -> str | None:
    """The ``x5t#S256`` a token is bound to, None if unbound; ``ValueError`` on a ``cnf`` we cannot honour.

    A ``cnf`` with only other methods (``jkt`` for DPoP, ``jwk``) is refused: accepting it as a plain
    bearer token would drop the sender constraint its issuer asked for.
    """
    if "cnf" not in claims:
        return None
    cnf = claims["cnf"]
    if not isinstance(cnf, dict):
        raise ValueError("cnf is not an object")
    x5t = cnf.get("x5t#S256")
    if x5t is None:
        raise ValueError("cnf has no x5t#S256 (other confirmation methods are not supported)")
    if not isinstance(x5t, str) or not 40 <= len(x5t) <= 64:
        raise ValueError("cnf x5t#S256 is not a base64url SHA-256 thumbprint")
    return x5t


def default_provider_factory(base_dir: Path | None = None) -> ProviderFactory:
    """Static keys, or a JWKS provider verifying the server with ``jwks_ca_file`` when given
    (relative to ``base_dir``, default cwd)."""

    def factory(issuer: Issuer, on_change: Callable[[KeySet], None]) -> KeyProvider:
        if issuer.keys:
            return StaticKeyProvider(issuer)
        if issuer.jwks_ca_file is not None:
            p = Path(issuer.jwks_ca_file).expanduser()
            if not p.is_absolute():
                p = (base_dir if base_dir is not None else Path.cwd()) / p
            ctx = ca_context(p, what=f"issuers.{issuer.name}.jwks_ca_file")
            return JwksProvider(issuer, on_change=on_change, verify=ctx)
        return JwksProvider(issuer, on_change=on_change)

    return factory


def _deny(reason: Reason, detail: str) -> Deny:
    return Deny(reason, STAGE, detail=detail)


class JwtAuthenticator:
    """Bearer JWTs from any configured issuer. ``SKIP`` when the request carries no bearer credential."""

    __slots__ = ("_by_iss", "_cache", "_revocations", "_trust_domain", "providers")

    def __init__(
        self,
        by_iss: Mapping[str, _IssuerEntry],
        trust_domain: str,
        cache: VerifiedTokenCache[CachedAuth],
        revocations: RevokedJtis | None = None,
    ) -> None:
        self._by_iss = dict(by_iss)  # exact `iss` value -> issuer
        self._trust_domain = trust_domain
        self._cache = cache
        self._revocations = revocations
        if revocations is None and any(e.revocations for e in by_iss.values()):
            raise ConfigError(
                "issuers with revocations: true need the control plane's trust document"
                " (a control_plane section the gateway can reach)"
            )
        self.providers: Mapping[str, KeyProvider] = {e.name: e.provider for e in by_iss.values()}

    @classmethod
    def build(
        cls,
        issuers: Sequence[Issuer],
        trust_domain: str,
        cache_size: int = 10_000,
        *,
        provider_factory: ProviderFactory | None = None,
        base_dir: Path | None = None,
        revocations: RevokedJtis | None = None,
    ) -> Self:
        """Compile the issuers (static keys are loaded here). ``start()`` then fetches the JWKS.

        ``revocations`` (the trust puller) is required when an issuer has ``revocations: true``
        (``UNCHECKED_REVOCATIONS`` for tools that knowingly do without).
        """
        factory = provider_factory or default_provider_factory(base_dir)
        cache: VerifiedTokenCache[CachedAuth] = VerifiedTokenCache(cache_size)
        by_iss: dict[str, _IssuerEntry] = {}
        for issuer in issuers:
            if (other := by_iss.get(issuer.issuer)) is not None:
                raise ConfigError(f"issuers.{issuer.name}: same iss {issuer.issuer!r} as issuer {other.name}")

            def on_change(_keys: KeySet, name: str = issuer.name) -> None:
                # A rotated or withdrawn key must not keep tokens alive from the cache (oathkeeper#763).
                cache.evict_where(lambda hit: hit.token.issuer_name == name)

            try:
                provider = factory(issuer, on_change)
            except KeySetError as exc:
                raise ConfigError(f"issuers.{issuer.name}.keys: {exc}") from None
            by_iss[issuer.issuer] = _IssuerEntry(
                issuer.name,
                TokenVerifier(issuer, provider.keys),
                provider,
                issuer.workload_identities,
                issuer.revocations,
            )
        return cls(by_iss, trust_domain, cache, revocations)

    async def start(self) -> None:
        """First fetch of every issuer's keys, concurrently (each bounded by its jwks_timeout_seconds)."""
        await asyncio.gather(*(p.start() for p in self.providers.values()))

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.providers.values()))

    @property
    def cache(self) -> VerifiedTokenCache[CachedAuth]:
        return self._cache

    async def authenticate(self, ctx: RequestContext, allowed_issuers: tuple[str, ...] | None) -> Verdict:
        values = ctx.header_values(b"authorization")
        if not values:
            return SKIP
        if len(values) > 1:
            return _deny(Reason.TOKEN_MALFORMED, "several Authorization headers")
        value = values[0]
        if value[:7].lower() != b"bearer ":
            if value.lower() != b"bearer" and _OTHER_SCHEME.fullmatch(value):
                return SKIP  # another scheme (Basic, ...): another authenticator's credential
            return _deny(Reason.TOKEN_MALFORMED, "Authorization is not 'Bearer <b64token>'")
        token = value[7:]
        now = ctx.now
        hit = self._cache.get(token, now)
        if hit is None:
            if _B64TOKEN.fullmatch(token) is None:
                return _deny(Reason.TOKEN_MALFORMED, "Authorization is not 'Bearer <b64token>'")
            result = await self._verify(token, allowed_issuers, now)
            if isinstance(result, Deny):
                return result
            hit = result
        elif allowed_issuers is not None and hit.identity.issuer not in allowed_issuers:
            return _deny(Reason.TOKEN_BAD_ISSUER, f"issuer {hit.identity.issuer} not accepted on this route")
        if hit.x5t is not None:
            # RFC 8705 §3: a bound token is only good on a TLS connection with that very certificate.
            have = ctx.peer_cert_x5t
            if have is None and ctx.peer_cert_der is not None:
                have = cert_thumbprint(ctx.peer_cert_der)
            if hit.x5t != have:
                what = "no client certificate" if have is None else "another client certificate"
                return _deny(
                    Reason.TOKEN_BINDING_MISMATCH, f"token bound to a certificate, request has {what}"
                )
        jti = hit.jti
        if jti is not None and self._revocations is not None and jti in self._revocations.revoked_jtis:
            return _deny(Reason.TOKEN_REVOKED, f"{hit.identity.issuer}: jti revoked")
        ctx.identity = hit.identity
        return CONTINUE

    async def _verify(self, token: bytes, allowed: tuple[str, ...] | None, now: float) -> CachedAuth | Deny:
        try:
            parsed = parse_compact(token)
        except IdentityError as exc:
            return _deny(exc.reason, str(exc))
        iss = parsed.unverified_issuer
        if iss is None:
            return _deny(Reason.TOKEN_MISSING_CLAIM, "no iss claim")
        entry = self._by_iss.get(iss) if isinstance(iss, str) else None
        if entry is None:
            return _deny(Reason.TOKEN_BAD_ISSUER, f"iss {str(iss)[:100]!r} is not a configured issuer")
        if allowed is not None and entry.name not in allowed:
            return _deny(Reason.TOKEN_BAD_ISSUER, f"issuer {entry.name} not accepted on this route")
        try:
            vt = entry.verifier.verify_parsed(parsed, now)
        except IdentityError as exc:
            if exc.reason not in (Reason.TOKEN_UNKNOWN_KEY, Reason.KEYS_UNAVAILABLE):
                return _deny(exc.reason, f"{entry.name}: {exc}")
            kid = parsed.header.get("kid")
            if not await entry.provider.refetch_for_unknown_kid(kid if isinstance(kid, str) else None):
                return _deny(exc.reason, f"{entry.name}: {exc} (no refetch or still unknown)")
            try:
                vt = entry.verifier.verify_parsed(parsed, now)
            except IdentityError as exc2:
                return _deny(exc2.reason, f"{entry.name}: {exc2} (after refetch)")
        try:
            x5t = _confirmation(vt.claims)
        except ValueError as exc:
            return _deny(Reason.TOKEN_BINDING_MISMATCH, f"{entry.name}: {exc}")
        jti: str | None = None
        if entry.revocations:
            raw_jti = vt.claims.get("jti")
            if not isinstance(raw_jti, str) or not raw_jti:
                # The issuer's tokens are revocable by jti: one without it could never be revoked.
                return _deny(Reason.TOKEN_MISSING_CLAIM, f"{entry.name}: no jti (its tokens are revocable)")
            jti = raw_jti
        identity = identity_from_token(vt, self._trust_domain, workloads=entry.workloads)
        hit = CachedAuth(vt, identity, x5t, jti)
        self._cache.put(token, hit, vt.exp, now)
        return hit

    def __repr__(self) -> str:
        return f"<JwtAuthenticator issuers={sorted(self.providers)} {self._cache!r}>"


__all__ = [
    "UNCHECKED_REVOCATIONS",
    "CachedAuth",
    "JwtAuthenticator",
    "ProviderFactory",
    "RevokedJtis",
    "cert_thumbprint",
    "default_provider_factory",
]
