"""Signing keys of one issuer, kept fresh and built for IdP failure (the I/O edge of ``identity``).

Invariants: ``keys()`` never blocks and only ever returns the last *good* KeySet; an HTTP error, a
garbage or an empty JWKS never replaces it (Istio #37456, #53260); unknown-kid refetches are
single-flight and rate-limited (Envoy #14557); the first fetch failing is not fatal (Envoy #13705).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import httpx

from garrison.config.models import Issuer
from garrison.errors import ConfigError, KeySetError
from garrison.identity.keys import KeySet, load_static_keys, parse_jwks, strict_json_object

log = logging.getLogger("garrison.identity.jwks")

MAX_JWKS_BYTES = 1 << 20
_MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# identity encoding only: a compressed body could inflate far past the size cap in one chunk
_HEADERS = {"accept": "application/jwk-set+json, application/json", "accept-encoding": "identity"}


def ca_context(path: Path, *, what: str) -> ssl.SSLContext:
    """A client TLS context that trusts only the PEM CAs in ``path`` (``what`` names the config key)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=str(path))
    except (OSError, ssl.SSLError, ValueError) as exc:
        msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"{what}: cannot load CA certificates from {path}: {msg}") from None
    if not ctx.get_ca_certs():
        raise ConfigError(f"{what}: {path} holds no CA certificate")
    return ctx


class KeyProvider(Protocol):
    """What the authenticator (and the metrics) need from a key source, JWKS-backed or static."""

    @property
    def last_success_at(self) -> float | None: ...  # epoch seconds

    @property
    def fetch_failures(self) -> int: ...

    @property
    def fetches(self) -> int: ...

    @property
    def key_count(self) -> int: ...

    def keys(self) -> KeySet | None: ...

    async def refetch_for_unknown_kid(self, kid: str | None) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class StaticKeyProvider:
    """An issuer with ``keys:`` in garrison.yaml. Loaded once; refetching is a no-op."""

    def __init__(self, issuer: Issuer) -> None:
        self.name = issuer.name
        self._keys = load_static_keys(issuer.keys, issuer.algorithms)  # KeySetError on a bad key
        self.last_success_at: float | None = time.time()
        self.fetch_failures = 0
        self.fetches = 0

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def keys(self) -> KeySet | None:
        return self._keys

    async def refetch_for_unknown_kid(self, kid: str | None) -> bool:
        return False

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<StaticKeyProvider {self.name} {self._keys!r}>"


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


class JwksProvider:
    """Fetches an issuer's JWKS (``jwks_url`` or OIDC discovery) and refreshes it in the background."""

    def __init__(
        self,
        issuer: Issuer,
        *,
        client: httpx.AsyncClient | None = None,
        verify: ssl.SSLContext | bool = True,
        max_bytes: int = MAX_JWKS_BYTES,
        retry_initial_seconds: float = 1.0,
        on_change: Callable[[KeySet], None] | None = None,
    ) -> None:
        self.name = issuer.name
        self._issuer = issuer
        self._algorithms = frozenset(issuer.algorithms)
        self._jwks_uri: str | None = issuer.jwks_url
        self._max_bytes = max_bytes
        self._retry_initial = retry_initial_seconds
        self._on_change = on_change
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(issuer.jwks_timeout_seconds),
            follow_redirects=False,  # redirects are followed by hand, same origin only
            trust_env=False,
            verify=verify,
        )
        self._keys: KeySet | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Task[bool] | None = None
        self._last_fetch_started: float | None = None
        self._consecutive_failures = 0
        self._rng = random.Random()  # noqa: S311 - jitter only, not security-relevant
        self.last_success_at: float | None = None
        self.fetch_failures = 0
        self.fetches = 0

    # -- read side (hot path: never blocks) -----------------------------------------------------
    def keys(self) -> KeySet | None:
        return self._keys

    @property
    def key_count(self) -> int:
        return len(self._keys) if self._keys is not None else 0

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """First fetch (a failure is logged, not raised), then the background refresh loop."""
        await self._fetch_shared()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"jwks-refresh:{self.name}")

    async def close(self) -> None:
        for task in (self._task, self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._inflight = None
        if self._own_client:
            await self._client.aclose()

    async def refetch_for_unknown_kid(self, kid: str | None) -> bool:
        """Fetch again because a token named a key we lack. True if ``kid`` is known afterwards.

        Single-flight (concurrent callers await the same fetch) and at most one fetch started per
        ``jwks_min_refetch_seconds``, so a flood of random kids cannot hammer the IdP.
        """
        if self._keys is not None and kid is not None and kid in self._keys:
            return True
        if self._inflight is None:
            last = self._last_fetch_started
            if last is not None and time.monotonic() - last < self._issuer.jwks_min_refetch_seconds:
                return False
        ok = await self._fetch_shared()
        return ok and self._keys is not None and (kid is None or kid in self._keys)

    # -- internals ------------------------------------------------------------------------------
    def _next_delay(self) -> float:
        refresh = self._issuer.jwks_refresh_seconds
        if self._consecutive_failures == 0:
            return refresh * self._rng.uniform(0.9, 1.1)
        # exponential backoff with full jitter, capped at the refresh interval
        backoff = min(refresh, self._retry_initial * 2 ** min(self._consecutive_failures - 1, 20))
        return self._rng.uniform(backoff / 2, backoff)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._next_delay())
            await self._fetch_shared()

    async def _fetch_shared(self) -> bool:
        task = self._inflight
        if task is None:
            self._last_fetch_started = time.monotonic()
            task = asyncio.get_running_loop().create_task(self._fetch())
            self._inflight = task
            task.add_done_callback(self._clear_inflight)
        # shield: one cancelled waiter (a client hung up) must not cancel the shared fetch
        return await asyncio.shield(task)

    def _clear_inflight(self, task: asyncio.Task[bool]) -> None:
        if self._inflight is task:
            self._inflight = None

    async def _fetch(self) -> bool:
        self.fetches += 1
        try:
            # one deadline for the whole fetch (discovery, redirects, body): httpx's timeout is per
            # phase, so a server dripping a byte every few seconds would otherwise never time out
            async with asyncio.timeout(self._issuer.jwks_timeout_seconds):
                uri = self._jwks_uri or await self._discover()
                keyset = parse_jwks(await self._get(uri), self._algorithms)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # built for failure: nothing here may kill the refresh loop
            self.fetch_failures += 1
            self._consecutive_failures += 1
            if self._issuer.discovery:
                self._jwks_uri = None  # rediscover next time: the IdP may have moved its JWKS
            log.warning(
                "JWKS fetch for issuer %s failed (%d in a row, keeping %s): %s: %s",
                self.name,
                self._consecutive_failures,
                "last good keys" if self._keys is not None else "no keys",
                type(exc).__name__,
                exc,
            )
            return False
        old = self._keys
        self._keys = keyset
        self.last_success_at = time.time()
        self._consecutive_failures = 0
        if old is None or old.fingerprint != keyset.fingerprint:
            log.info("issuer %s signing keys now %r", self.name, keyset)
            if self._on_change is not None:
                try:
                    self._on_change(keyset)
                except Exception:
                    log.exception("on_change callback for issuer %s failed", self.name)
        return True

    def _check_url(self, url: httpx.URL) -> None:
        if url.scheme != "https" and not (url.scheme == "http" and self._issuer.insecure_allow_http_jwks):
            raise KeySetError(f"refusing {url.scheme}:// URL for keys (https required)")

    async def _discover(self) -> str:
        """OIDC Discovery §4: fetch the provider metadata; its ``issuer`` must equal ours exactly."""
        url = self._issuer.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            meta = strict_json_object(await self._get(url))
        except ValueError as exc:
            raise KeySetError(f"discovery document is not a JSON object: {exc}") from None
        # OIDC Discovery §4.3: "MUST be identical to the Issuer URL ... used as the prefix".
        if meta.get("issuer") != self._issuer.issuer:
            got = str(meta.get("issuer"))[:100]
            raise KeySetError(f"discovery issuer {got!r} != configured {self._issuer.issuer!r}")
        uri = meta.get("jwks_uri")
        if not isinstance(uri, str):
            raise KeySetError("discovery document has no jwks_uri")
        self._check_url(httpx.URL(uri))
        self._jwks_uri = uri
        return uri

    async def _get(self, url_str: str) -> bytes:
        url = httpx.URL(url_str)
        for _ in range(_MAX_REDIRECTS + 1):
            self._check_url(url)
            async with self._client.stream("GET", url, headers=_HEADERS) as resp:
                if resp.status_code in _REDIRECTS:
                    target = url.join(resp.headers.get("location", ""))
                    if not _same_origin(url, target):
                        raise KeySetError(f"redirect to another origin refused: {target.host}")
                    url = target
                    continue
                if resp.status_code != 200:
                    raise KeySetError(f"HTTP {resp.status_code} from {url.host}")
                if resp.headers.get("content-encoding", "identity").lower() != "identity":
                    raise KeySetError("compressed key document refused")
                length = resp.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > self._max_bytes:
                    raise KeySetError(f"response of {length} bytes exceeds {self._max_bytes}")
                body = bytearray()
                async for chunk in resp.aiter_raw():
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise KeySetError(f"response exceeds {self._max_bytes} bytes")
                return bytes(body)
        raise KeySetError("too many redirects")

    def __repr__(self) -> str:
        return (
            f"<JwksProvider {self.name} keys={self.key_count} fetches={self.fetches} "
            f"failures={self.fetch_failures}>"
        )


__all__ = ["MAX_JWKS_BYTES", "JwksProvider", "KeyProvider", "StaticKeyProvider", "ca_context"]
